"""The registry of image sources: the one place that knows each dataset.

Each entry declares the official files with their published checksums and origin,
the image shape, split sizes and class names (known without loading anything, so a
study is checked before any job runs), its options, its loader, and whether it ships
its own unlabeled images and predefined folds. The schema's dataset names, the study
checks and the download and prepare rules all read from here (tests/test_sources.py
fails when the schema disagrees, or an entry breaks the contract every source meets).

A new dataset is one module building its `Source` (selfsup.data.dataset), as
selfsup/data/svhn.py does, and one line in SOURCES below; the sources defined in this
file predate that convention.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from selfsup.data import archives, formats, svhn
from selfsup.data.dataset import DataError, Dataset, Foreign, Layout, Source, foreign_count
from selfsup.data.generated import load_digits, make_synthetic
from selfsup.data.idx import read_idx_folder

DIGITS = tuple(str(d) for d in range(10))
FASHION = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
CIFAR100_FINE = (
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
)
CIFAR100_COARSE = (
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
)
CIFAR100_CLASSES = {"fine": CIFAR100_FINE, "coarse": CIFAR100_COARSE}


def _fixed(layout: Layout) -> Callable[[dict], Layout]:
    return lambda options: layout


def _idx(class_names):
    def load(folder, work_dir=None, verify=True, option="dataset.data_dir", files=None, contents=None):
        if folder is None:
            raise DataError("this source needs a folder of IDX files (download or dataset.data_dir)")
        if verify:
            _check_idx_files(Path(folder), files, contents, option)
        return read_idx_folder(folder, class_names)

    return load


def _check_idx_files(folder: Path, files: dict, contents: dict, option: str) -> None:
    """Every IDX file in `folder` (.gz or raw) against its checksums, before it is parsed."""
    for name, md5 in files.items():
        stem = name.removesuffix(".gz")
        if (folder / name).is_file():
            archives.check_gzip(folder / name, md5, contents[stem], option)
        elif (folder / stem).is_file():
            archives.check_md5(folder / stem, contents[stem], option)
        # A missing file is reported by the reader, with the names it looks for.


def _archive(spec: dict, reader):
    def load(folder, work_dir, verify=True, option="dataset.data_dir", files=None, contents=None, **options):
        if folder is None:
            raise DataError(f"{spec['archive']} is needed (download or dataset.data_dir)")
        return reader(archives.locate(folder, spec, work_dir, option, verify=verify), **options)

    return load


def _cifar100_layout(options: dict) -> Layout:
    return Layout(50000, 10000, (32, 32, 3), CIFAR100_CLASSES[options["label_mode"]])


def _synthetic_layout(options: dict) -> Layout:
    # Limits of make_synthetic: a ground line (2 rows) and a glyph of at least 3 pixels
    # with room to move; messages start with the option's name (study: dataset.options.<key>).
    least = {"n_train": 1, "n_test": 1, "image_size": 6, "num_classes": 1, "seed": 0}
    for key, low in least.items():
        if options[key] < low:
            raise DataError(f"{key}: {options[key]!r} is too small; allowed: an integer of at least {low}")
    size = options["image_size"]
    names = tuple(f"glyph{c}" for c in range(options["num_classes"]))
    return Layout(options["n_train"], options["n_test"], (size, size, 1), names)


def _synthetic_defaults() -> dict:
    import inspect

    return {p.name: p.default for p in inspect.signature(make_synthetic).parameters.values()}


SOURCES: dict[str, Source] = {
    "mnist": Source(
        description="MNIST handwritten digits, 28x28 grayscale, 60,000 train / 10,000 test",
        layout=_fixed(Layout(60000, 10000, (28, 28, 1), DIGITS)),
        load=_idx(DIGITS),
        files={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        origin="https://ossci-datasets.s3.amazonaws.com/mnist/",
        # MD5s of the decompressed official files (md5sum of the gunzipped .gz above; other
        # projects list the same values): a folder may hold them raw or recompressed.
        contents={
            "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
        },
    ),
    "fashion_mnist": Source(
        description="Fashion-MNIST, 28x28 grayscale, 60,000 train / 10,000 test",
        layout=_fixed(Layout(60000, 10000, (28, 28, 1), FASHION)),
        load=_idx(FASHION),
        files={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        origin="https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        contents={  # as for mnist
            "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
        },
        mirror_keeps_class=True,
    ),
    "cifar10": Source(
        description="CIFAR-10 (binary version), 32x32x3, 50,000 train / 10,000 test",
        layout=_fixed(Layout(50000, 10000, (32, 32, 3), CIFAR10_CLASSES)),
        load=_archive(formats.CIFAR10, formats.read_cifar10),
        files={formats.CIFAR10["archive"]: formats.CIFAR10["md5"]},
        origin=formats.CIFAR10["url"].rsplit("/", 1)[0] + "/",
        mirror_keeps_class=True,
    ),
    "cifar100": Source(
        description="CIFAR-100 (binary version), 32x32x3, 50,000 train / 10,000 test, fine or coarse labels",
        layout=_cifar100_layout,
        load=_archive(formats.CIFAR100, formats.read_cifar100),
        options={"label_mode": "fine"},
        choices={"label_mode": formats.CIFAR100_LABEL_MODES},
        files={formats.CIFAR100["archive"]: formats.CIFAR100["md5"]},
        origin=formats.CIFAR100["url"].rsplit("/", 1)[0] + "/",
        mirror_keeps_class=True,
    ),
    "stl10": Source(
        description="STL-10 (binary version), 96x96x3, 5,000 train in 10 folds / 8,000 test / 100,000 unlabeled",
        layout=_fixed(
            Layout(5000, 8000, (96, 96, 3), STL10_CLASSES, n_unlabeled=100000, n_folds=10, fold_size=1000)
        ),
        load=_archive(formats.STL10, formats.read_stl10),
        files={formats.STL10["archive"]: formats.STL10["md5"]},
        origin=formats.STL10["url"].rsplit("/", 1)[0] + "/",
        mirror_keeps_class=True,
    ),
    "svhn": svhn.SOURCE,
    "digits": Source(
        description="scikit-learn's bundled 8x8 digits (no download), 1,500 train / 297 test",
        layout=_fixed(Layout(1500, 297, (8, 8, 1), DIGITS)),
        load=lambda folder, work_dir=None: load_digits(),
    ),
    "synthetic": Source(
        description="generated images with an upright orientation (a ground line and class glyphs)",
        layout=_synthetic_layout,
        load=lambda folder, work_dir=None, **options: make_synthetic(**options),
        options=_synthetic_defaults(),
    ),
}


def get_source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(SOURCES)}") from None


def layout(name: str, options: dict | None = None) -> Layout:
    """The layout of source `name` with `options` over its defaults, without loading it."""
    source = get_source(name)
    options = {**source.options, **(options or {})}
    unknown = sorted(set(options) - set(source.options))
    if unknown:
        raise DataError(
            f"{name} takes no option(s) {', '.join(unknown)}; its options: {sorted(source.options)}"
        )
    for key, allowed in source.choices.items():
        if options[key] not in allowed:
            raise DataError(f"{name} option {key}: {options[key]!r} is not one of {', '.join(allowed)}")
    return source.layout(options)


def load_dataset(
    name: str,
    folder: str | Path | None = None,
    work_dir: str | Path | None = None,
    *,
    verify_checksums: bool = True,
    option: str = "dataset.data_dir",
    **options,
) -> Dataset:
    """Load source `name` from `folder`, extracting archives into `work_dir`.

    Official files are checked against their published checksums before they are parsed
    (`verify_checksums`: dataset.verify_checksums); `option` is the study setting that
    names `folder`, for the messages. Large image arrays may be views on files in
    `work_dir`: copy them before removing it (`prepare` does both). The class names found
    must be the registry's.
    """
    source = get_source(name)
    options = {**source.options, **options}
    if not source.needs_files:
        dataset = source.load(None, None, **options)
    else:
        if folder is None:
            raise DataError(f"{name} needs its files: download them or set {option}")
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"{option} {folder} is not a folder")
        dataset = source.load(
            folder,
            work_dir,
            verify=verify_checksums,
            option=option,
            files=source.files,
            contents=source.contents,
            **options,
        )
    expected = list(source.layout(options).class_names)
    if list(dataset.class_names) != expected:
        raise DataError(
            f"{name} in {folder}: class names {list(dataset.class_names)[:5]}... differ from the "
            f"registry's {expected[:5]}...; the files are not the official ones"
        )
    return dataset


def foreign_images(
    contamination: dict, dataset: Dataset, work_dir=None, verify_checksums: bool = True
) -> Foreign:
    """Training images of the source `contamination["source"]` (its default options, read
    from `contamination["folder"]`) to mix into `dataset`: as many as make up
    `fraction` of its training images (rounded up), a random choice drawn with `seed`."""
    name, fraction = contamination["source"], contamination["fraction"]
    seed = contamination.get("seed", 0)
    try:
        source = load_dataset(
            name,
            contamination.get("folder"),
            work_dir,
            verify_checksums=verify_checksums,
            option="dataset.contamination.data_dir",
        )
    except DataError as error:  # its messages name dataset.data_dir: say whose files these are
        raise DataError(
            f"dataset.contamination.source {name}: {error} (for the foreign source, read "
            "dataset.contamination.data_dir)"
        ) from None
    if source.image_shape != dataset.image_shape:
        raise DataError(
            f"dataset.contamination: {name} images are {source.image_shape}, the dataset's "
            f"{dataset.image_shape}; foreign images must have the dataset's shape"
        )
    wanted = foreign_count(fraction, len(dataset.x_train), up=True)
    available = len(source.x_train)
    if wanted > available:
        raise DataError(
            f"dataset.contamination: fraction {fraction} of {len(dataset.x_train)} training "
            f"images needs {wanted} foreign images; {name} has {available} training images"
        )
    index = np.sort(np.random.default_rng(seed).choice(available, wanted, replace=False))
    # Only the chosen images are copied out of the (possibly memmapped) source.
    images = np.asarray(source.x_train[index], np.uint8)
    return Foreign(images, index.astype(np.int64), name, float(fraction), int(seed))
