"""The peer side of benchmarks/peer.py: one two-view pretext run with lightly on PyTorch (CPU).

Runs in the benchmark's own virtual environment (benchmarks/out/peer/venv, made by
`benchmarks/peer.py --setup`), never in the project's: it imports only torch,
torchvision, lightly and numpy. It trains the torch twin of the pipeline's small_cnn with
lightly's heads and losses the way lightly's examples do (a per-image torchvision
transform making two views, a DataLoader, a plain training loop), times every epoch, and
saves the encoder's features of the kNN images for peer.py to score with the pipeline's
own kNN definition. Prints one JSON line.

    benchmarks/out/peer/venv/bin/python benchmarks/peer_torch.py --versions
    benchmarks/out/peer/venv/bin/python benchmarks/peer_torch.py --method simclr --pool pool.npy ...
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path

# Run as a script, this folder comes first on sys.path, and its profile.py would shadow
# the standard library's profile module, which torch._dynamo imports (through cProfile).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import torch  # noqa: E402


def _import_lightly():
    """torchvision and lightly, importable with the CPU build of torch.

    The only torchvision 0.28 wheel the package index has is built against CUDA torch,
    so its C extension (detection ops: nms, roi_align, ...) cannot load beside
    torch+cpu, and torchvision's import registers fake kernels for nms and qnms without
    checking that they exist. Declaring those two operators (never called here) lets the
    import finish; the transforms used below are Python and torch only."""
    try:
        import torchvision  # noqa: F401
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        library = torch.library.Library("torchvision", "DEF")
        library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _import_lightly.library = library  # kept alive: the definitions go with it
    import lightly
    import torchvision

    return torchvision, lightly


torchvision, lightly = _import_lightly()

from lightly.loss import (  # noqa: E402
    BarlowTwinsLoss,
    NegativeCosineSimilarity,
    NTXentLoss,
    VICRegLoss,
)
from lightly.models.modules.heads import (  # noqa: E402
    BarlowTwinsProjectionHead,
    BYOLPredictionHead,
    BYOLProjectionHead,
    ProjectionHead,
    SimCLRProjectionHead,
    SimSiamPredictionHead,
    VICRegProjectionHead,
)
from lightly.models.utils import deactivate_requires_grad, update_momentum  # noqa: E402
from lightly.transforms.multi_view_transform import MultiViewTransform  # noqa: E402
from lightly.utils.scheduler import cosine_schedule  # noqa: E402
from torch import nn  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

FEATURE_BATCH = 256  # images per encoder call for the kNN features, as the pipeline's monitor


def versions() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightly": lightly.__version__,
        "numpy": np.__version__,
        "torch_mkldnn": bool(torch.backends.mkldnn.is_available()),
    }


# --- the network: the pipeline's small_cnn in torch ----------------------------------------


def small_cnn(channels: int, size: int, filters: list[int], dense: list[int]) -> nn.Sequential:
    """selfsup.encoders.small_cnn: per width two 3x3 ReLU convs (stride 1, "same" padding)
    and a 2x2 max-pool (floor), then flatten and ReLU Dense layers; no BatchNorm, no dropout."""
    layers: list[nn.Module] = []
    for width in filters:
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        channels, size = width, size // 2
    layers.append(nn.Flatten())
    features = channels * size * size
    for width in dense:
        layers += [nn.Linear(features, width), nn.ReLU()]
        features = width
    return nn.Sequential(*layers)


def keras_init(module: nn.Module) -> None:
    """Keras' initialisation (Glorot-uniform kernels, zero biases) instead of torch's
    (Kaiming-uniform with a = sqrt(5), uniform biases), so both sides start alike;
    BatchNorm starts at scale 1, offset 0 in both."""
    if isinstance(module, nn.Conv2d | nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


# --- heads: lightly's classes at the widths of benchmarks/contrastive.py's HEADS ------------


def heads(method: str, options: dict, width: int) -> dict[str, nn.Module]:
    """The projector (and predictor) of `method` as the pipeline builds them
    (selfsup.pretext.two_view.mlp): Linear without bias before a BatchNorm, with one
    otherwise, BatchNorm eps 1e-5 and momentum 0.1 (torch's defaults)."""
    projector = options["projector"]
    if method == "simclr":  # Linear-ReLU-Linear, no BatchNorm (solo-learn's head)
        if len(projector) != 2:
            raise ValueError("the simclr head here has one hidden layer")
        return {"projector": SimCLRProjectionHead(width, projector[0], projector[1], batch_norm=False)}
    if method == "byol":
        return {
            "projector": BYOLProjectionHead(width, projector[0], projector[1]),
            "predictor": BYOLPredictionHead(projector[1], *options["predictor"]),
        }
    if method == "simsiam":
        # lightly's SimSiamProjectionHead has three layers; the pipeline's head here has two:
        # Linear-BN-ReLU, then Linear-BN(affine=False), built from lightly's base class.
        blocks = []
        for hidden in projector[:-1]:
            blocks.append((width, hidden, nn.BatchNorm1d(hidden), nn.ReLU()))
            width = hidden
        blocks.append((width, projector[-1], nn.BatchNorm1d(projector[-1], affine=False), None))
        return {
            "projector": ProjectionHead(blocks),
            "predictor": SimSiamPredictionHead(projector[-1], *options["predictor"]),
        }
    if method == "barlow_twins":
        if len(projector) != 3 or projector[0] != projector[1]:
            raise ValueError("lightly's Barlow Twins head has three layers, the first two equal")
        return {"projector": BarlowTwinsProjectionHead(width, projector[0], projector[2])}
    if method == "vicreg":
        if len(set(projector[:-1])) != 1:
            raise ValueError("lightly's VICReg head has equal hidden widths")
        return {
            "projector": VICRegProjectionHead(width, projector[0], projector[-1], num_layers=len(projector))
        }
    raise ValueError(f"no lightly model for {method!r}")


class TwoView(nn.Module):
    """Encoder and heads; for BYOL also the momentum (target) encoder and projector, as in
    lightly's BYOL example (copies, no gradients, parameters moved by update_momentum,
    run in training mode so that their BatchNorm uses batch statistics)."""

    def __init__(self, method: str, encoder: nn.Module, options: dict, width: int):
        super().__init__()
        self.method = method
        self.encoder = encoder
        for name, head in heads(method, options, width).items():
            setattr(self, name, head)
        self.apply(keras_init)
        if method == "byol":
            self.encoder_momentum = copy.deepcopy(self.encoder)
            self.projector_momentum = copy.deepcopy(self.projector)
            deactivate_requires_grad(self.encoder_momentum)
            deactivate_requires_grad(self.projector_momentum)

    def online_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def forward(self, x):
        z = self.projector(self.encoder(x))
        if self.method == "simsiam":
            return z.detach(), self.predictor(z)
        if self.method == "byol":
            return self.predictor(z)
        return z

    def forward_momentum(self, x):
        return self.projector_momentum(self.encoder_momentum(x)).detach()

    def momentum_update(self, m: float) -> None:
        update_momentum(self.encoder, self.encoder_momentum, m=m)
        update_momentum(self.projector, self.projector_momentum, m=m)


def criterion(method: str, options: dict):
    """The method's loss from lightly's loss classes, scaled where needed to the
    pipeline's value (selfsup.pretext.losses)."""
    if method == "simclr":
        ntxent = NTXentLoss(temperature=options["temperature"], gather_distributed=False)
        return lambda model, x0, x1: ntxent(model(x0), model(x1))
    if method == "simsiam":
        cosine = NegativeCosineSimilarity()

        def simsiam(model, x0, x1):
            (z0, p0), (z1, p1) = model(x0), model(x1)
            return 0.5 * (cosine(p0, z1) + cosine(p1, z0))

        return simsiam
    if method == "byol":
        cosine = NegativeCosineSimilarity()

        def byol(model, x0, x1):
            p0, p1 = model(x0), model(x1)
            t0, t1 = model.forward_momentum(x0), model.forward_momentum(x1)
            # The pipeline's loss, mean(2 - 2 cos(p0, t1) + 2 - 2 cos(p1, t0)); lightly's
            # example takes 0.5 * (...) of the same cosines, a factor Adam all but cancels.
            return 4.0 + 2.0 * (cosine(p0, t1) + cosine(p1, t0))

        return byol
    if method == "barlow_twins":
        barlow = BarlowTwinsLoss(lambda_param=options["lambda_offdiag"], gather_distributed=False)
        scale = options.get("scale_loss", 1.0)
        return lambda model, x0, x1: scale * barlow(model(x0), model(x1))
    if method == "vicreg":
        vicreg = VICRegLoss(
            lambda_param=options["sim_weight"],
            mu_param=options["var_weight"],
            nu_param=options["cov_weight"],
            gather_distributed=False,
        )
        return lambda model, x0, x1: vicreg(model(x0), model(x1))
    raise ValueError(f"no lightly loss for {method!r}")


# --- views: the pipeline's simclr_grayscale preset in torchvision ---------------------------


class AdditiveBrightness(nn.Module):
    """Add one uniform draw from [-delta, delta] to the image and clip to [0, 1]: the
    pipeline's brightness (tf.image's, SimCLR v1's); torchvision's ColorJitter brightness
    multiplies by [1 - b, 1 + b] instead."""

    def __init__(self, delta: float):
        super().__init__()
        self.delta = float(delta)

    def forward(self, image):
        shift = torch.empty(1).uniform_(-self.delta, self.delta)
        return (image + shift).clamp_(0.0, 1.0)


def view_transform(size: int) -> v2.Compose:
    """selfsup.augment's simclr_grayscale, in its order: random resized crop (area 0.2-1,
    aspect 3/4-4/3, bilinear), horizontal flip (p 0.5), then with p 0.8 brightness +-0.4
    (additive) followed by contrast x[0.6, 1.4] about the image's mean, each clipped."""
    return v2.Compose(
        [
            v2.ToDtype(torch.float32, scale=True),
            v2.RandomResizedCrop(size, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), antialias=True),
            v2.RandomHorizontalFlip(0.5),
            v2.RandomApply(nn.ModuleList([AdditiveBrightness(0.4), v2.ColorJitter(contrast=0.4)]), p=0.8),
        ]
    )


class Views(torch.utils.data.Dataset):
    """uint8 images (N, C, H, W); each item is ([view 1, view 2], 0), as lightly's examples
    get from a torchvision dataset with a MultiViewTransform."""

    def __init__(self, images: torch.Tensor, transform):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        return self.transform(self.images[index]), 0


# --- the run ----------------------------------------------------------------------------


def features(encoder: nn.Module, images: np.ndarray) -> np.ndarray:
    """The encoder's features of uint8 images (N, H, W, C) scaled to [0, 1], in eval mode."""
    encoder.eval()
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float() / 255.0
    with torch.no_grad():
        out = [encoder(x[i : i + FEATURE_BATCH]) for i in range(0, len(x), FEATURE_BATCH)]
    return torch.cat(out).reshape(len(x), -1).numpy()


def train(args) -> dict:
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)
    torch.manual_seed(args.seed)
    options = json.loads(args.options)
    pool = np.load(args.pool)  # uint8 (N, H, W, C), the pipeline's pool in its order
    images = torch.from_numpy(np.ascontiguousarray(pool.transpose(0, 3, 1, 2)))
    channels, size = images.shape[1], images.shape[2]
    encoder = small_cnn(channels, size, args.filters, args.dense)
    model = TwoView(args.method, encoder, options, args.dense[-1])
    loss_of = criterion(args.method, options)
    # Keras' Adam: epsilon 1e-7 (torch's default is 1e-8), no weight decay.
    optimizer = torch.optim.Adam(model.online_parameters(), lr=args.learning_rate, eps=1e-7)
    transform = MultiViewTransform([view_transform(size), view_transform(size)])
    # num_workers=0: the process has the machine's 2 cores for its 2 torch threads, and
    # loader workers would compete with them (the pipeline's tf.data runs in its threads too).
    loader = torch.utils.data.DataLoader(
        Views(images, transform),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=0,
        generator=torch.Generator().manual_seed(args.seed),
    )
    steps = len(loader)
    total_steps = steps * args.epochs
    seconds, losses, step = [], [], 0
    for _ in range(args.epochs):
        model.train()
        start = time.perf_counter()
        total = 0.0
        for (x0, x1), _ in loader:
            loss = loss_of(model, x0, x1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if args.method == "byol":
                # After each step, as the pipeline's BYOL; lightly's schedule from the base
                # momentum to 1 over the run.
                model.momentum_update(cosine_schedule(step, total_steps, options["momentum"], 1.0))
            total += float(loss.detach())
        seconds.append(time.perf_counter() - start)
        losses.append(total / steps)
    np.save(args.features, features(model.encoder, np.load(args.knn_images)))
    return {
        "epoch_seconds": seconds,
        "images_per_epoch": steps * args.batch_size,
        "losses": losses,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "versions": versions(),
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--versions", action="store_true", help="print the versions and exit")
    parser.add_argument("--method", choices=["simclr", "byol", "simsiam", "barlow_twins", "vicreg"])
    parser.add_argument("--options", help="the method's options (heads, temperature, ...) as JSON")
    parser.add_argument("--pool", help="uint8 images (N, H, W, C), .npy")
    parser.add_argument("--knn-images", help="uint8 images whose features are saved, .npy")
    parser.add_argument("--features", help="where the kNN images' features go, .npy")
    parser.add_argument("--filters", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--dense", type=int, nargs="+", default=[64])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    print(json.dumps(versions() if args.versions else train(args)), flush=True)


if __name__ == "__main__":
    main()
