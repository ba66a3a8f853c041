"""The pipeline's training path against the reference notebooks' way, on one machine.

Three measurements, each both ways with the same network, optimizer, batch size and
images:
1. study B's rotation pretext (MNIST training images 0-9,999 in all four rotations,
   rotnet_mnist, Adam, batch 192): images/s of plain Keras `fit` on float32 NumPy
   arrays (every rotation copy materialized, as the notebook does) against
   `selfsup.pretext_stage.train_pretext` on the prepared uint8 files;
2. the same for study A's wide network (rotnet_fashion_mnist, SGD 0.01, batch 512,
   one random rotation per image) on a slice of the Fashion-MNIST unlabeled pool;
3. study B end to end with one seed: Snakemake's wall time for the whole study
   (prepare, split, pseudo-labels, pretext, three classifiers, report) against the
   time of one script that does the same the notebook way; test accuracies of both.
Images/s leave out each run's first epoch (graph tracing). Writes
benchmarks/results/speed.md and .csv.

    .venv/bin/python benchmarks/speed.py                  # about 45 min on 2 cores
    .venv/bin/python benchmarks/speed.py --epochs 10 --skip-end-to-end   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import machine

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
SHARED = ROOT.parent / "shared" / "data"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=50, help="study B pretext epochs (its protocol: 50)")
    parser.add_argument("--wide-images", type=int, default=2048, help="study A pool slice (images)")
    parser.add_argument("--wide-epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-end-to-end", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "speed")
    parser.add_argument("--report", type=Path, default=ROOT / "benchmarks" / "results" / "speed.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one measurement
    return parser.parse_args(argv)


# --- measurements, each in a fresh process (TensorFlow's thread pools are per process) ---


def _rate(seconds: list[float], samples: int) -> float:
    steady = seconds[1:] or seconds
    return samples * len(steady) / sum(steady)


def notebook_pretext(x, y, network: str, optimizer, batch_size: int, epochs: int) -> dict:
    """Plain Keras fit on float32 arrays, one timed epoch at a time."""
    import keras

    from selfsup.encoders import build_encoder

    encoder = build_encoder(network, x.shape[1:])
    inputs = keras.Input(x.shape[1:])
    outputs = keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(encoder(inputs)))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        history = model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=True, verbose=0)
        seconds.append(time.perf_counter() - start)
    return {
        "images_per_s": _rate(seconds, len(x)),
        "epoch_seconds": seconds,
        "final_accuracy": float(history.history["accuracy"][-1]),
    }


def pipeline_pretext(workdir: Path, study: dict, epochs: int) -> dict:
    """selfsup's own path: prepared uint8 files -> split -> pseudo-labels -> train_pretext."""
    import io

    from snakemake.utils import validate

    from selfsup import artifacts
    from selfsup.pretext import get_method
    from selfsup.stages import pretext as pretext_stage
    from selfsup.stages.prepare import prepare
    from selfsup.stages.split import split_dataset
    from selfsup.study import check_study

    validate(study, str(ROOT / "schemas" / "study.schema.yaml"))  # fills in the schema's defaults
    study = check_study(study)
    data = workdir / "data.h5"
    if not data.exists():
        prepare(
            study["dataset"]["name"],
            study["dataset"]["data_dir"],
            study["dataset"]["options"],
            data,
            {},
            verify_checksums=study["dataset"]["verify_checksums"],
        )
    split_path = workdir / "split.h5"
    split = split_dataset(data, {**study["split"], "normalization": study["dataset"]["normalization"]}, 1)
    artifacts.write_split(split_path, split, {})
    settings = {**study["pretext"]["rotation"], "epochs": epochs}
    positions, labels = get_method("rotation").pseudo_labels(len(split.unlabeled), settings["options"], 1)
    pool = workdir / "pool.h5"
    artifacts.write_pool(pool, split.unlabeled, "train", {})
    pseudo = workdir / "pseudo.h5"
    artifacts.write_pseudo_labels(pseudo, split.unlabeled[positions], labels, {})
    log = io.StringIO()
    history = pretext_stage.train_pretext(
        data_path=data,
        split_path=split_path,
        pool_path=pool,
        pseudo_path=pseudo,
        settings=settings,
        encoder_spec=study["encoder"],
        seed=1,
        meta={},
        encoder_path=workdir / "encoder.h5",
        history_path=workdir / "history.csv",
        examples_path=workdir / "examples.h5",
        stream=log,
    )
    seconds = [float(s) for s in re.findall(r"  ([0-9.]+) s \(", log.getvalue())]
    return {
        "images_per_s": _rate(seconds, len(positions)),
        "epoch_seconds": seconds,
        "final_accuracy": float(history.accuracy.iloc[-1]),
    }


def worker(name: str, args) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from selfsup import training

    if name.startswith("notebook"):
        # The notebook way: TensorFlow's defaults (no deterministic ops), the same threads.
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    else:
        training.configure(args.threads, 1)  # what every pipeline job does first
    import keras

    keras.utils.set_random_seed(1)
    import numpy as np
    import yaml

    from selfsup.data.sources import load_dataset
    from selfsup.pretext.rotation import rotate

    workdir = args.out / name
    workdir.mkdir(parents=True, exist_ok=True)
    if name.endswith("rotnet_mnist"):
        if name.startswith("notebook"):
            x = load_dataset("mnist", SHARED / "mnist").x_train[:10000]
            turns = np.tile(np.arange(4), len(x))
            x = rotate(np.repeat(x, 4, axis=0), turns).astype("float32") / 255.0
            return notebook_pretext(x, turns, "rotnet_mnist", keras.optimizers.Adam(1e-3), 192, args.epochs)
        study = yaml.safe_load((ROOT / "studies" / "rotnet_mnist.yaml").read_text())
        study["dataset"]["data_dir"] = str(SHARED / "mnist")
        return pipeline_pretext(workdir, study, args.epochs)
    # Study A's network on a slice of the Fashion-MNIST unlabeled pool.
    start, stop = 10000, 10000 + args.wide_images
    if name.startswith("notebook"):
        x = load_dataset("fashion_mnist", SHARED / "fashion-mnist", verify_checksums=False).x_train[
            start:stop
        ]
        turns = np.random.default_rng(1).integers(0, 4, len(x))
        x = rotate(x, turns).astype("float32") / 255.0
        return notebook_pretext(
            x, turns, "rotnet_fashion_mnist", keras.optimizers.SGD(0.01), 512, args.wide_epochs
        )
    study = yaml.safe_load((ROOT / "studies" / "rotnet_fashion_mnist.yaml").read_text())
    study["dataset"]["data_dir"] = str(SHARED / "fashion-mnist")
    study["dataset"]["verify_checksums"] = False  # the shared images are not the official bytes
    study["split"]["unlabeled"] = [start, stop]
    return pipeline_pretext(workdir, study, args.wide_epochs)


def measure(name: str, args) -> dict:
    command = [sys.executable, __file__, "--worker", name, "--out", str(args.out)]
    command += ["--epochs", str(args.epochs), "--wide-images", str(args.wide_images)]
    command += ["--wide-epochs", str(args.wide_epochs), "--threads", str(args.threads)]
    print(f"measuring {name} ...", flush=True)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- study B end to end ---------------------------------------------------------------

NOTEBOOK_SCRIPT = """
import os, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
start = time.perf_counter()
import json, sys
import numpy as np, keras, tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads({threads})
tf.config.threading.set_inter_op_parallelism_threads({threads})
keras.utils.set_random_seed(1)
from selfsup.data.sources import load_dataset
from selfsup.pretext.rotation import rotate
data = load_dataset("mnist", "{data_dir}")
x = data.x_train[:10000]
turns = np.tile(np.arange(4), len(x))
xr = rotate(np.repeat(x, 4, axis=0), turns).astype("float32") / 255.0
def network(outputs):
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(64, 3, strides=2, activation="relu", padding="same")(inputs)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(32, 3, activation="relu", padding="same")(h)
    h = keras.layers.MaxPooling2D(2)(h)
    return inputs, h
inputs, h = network(4)
h2 = keras.layers.Conv2D(16, 3, strides=2, activation="relu", padding="same")(h)
rot = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(h2)))
rot.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
rot.fit(xr, turns, batch_size=192, epochs={epochs}, shuffle=True, verbose=0)
features = keras.Model(inputs, h)
x_lab = data.x_train[10000:11000].astype("float32") / 255.0
y_lab = data.y_train[10000:11000]
x_test = data.x_test[300:600].astype("float32") / 255.0
y_test = data.y_test[300:600]
results = {{}}
for name, batch in (("frozen", 64), ("supervised", 32), ("random", 64)):
    inputs, h = network(10)
    base = keras.Model(inputs, h)
    if name == "frozen":
        base.set_weights(features.get_weights())
    base.trainable = name == "supervised"
    out = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(base(inputs)))
    clf = keras.Model(inputs, out)
    clf.compile(optimizer=keras.optimizers.SGD(0.001, momentum=0.9), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=7, restore_best_weights=True)
    clf.fit(x_lab, y_lab, batch_size=batch, epochs=50, validation_split=0.2, callbacks=[stop], verbose=0)
    results[name] = float(np.mean(np.argmax(clf.predict(x_test, verbose=0), 1) == y_test))
print(json.dumps({{"seconds": time.perf_counter() - start, "test_accuracy": results}}))
"""


def end_to_end(args) -> dict:
    import yaml

    workdir = args.out / "study_b_pipeline"
    if workdir.exists():
        subprocess.run(["rm", "-rf", str(workdir)], check=True)
    workdir.mkdir(parents=True)
    study = yaml.safe_load((ROOT / "studies" / "rotnet_mnist.yaml").read_text())
    study.update(study="rotnet_mnist_speed", seeds=[1])
    # The notebook trains these three classifiers; the pixel baselines are the pipeline's extra.
    study["downstream"]["protocols"] = ["frozen", "supervised", "random"]
    study["dataset"]["data_dir"] = str(SHARED / "mnist")
    study["pretext"]["rotation"]["epochs"] = args.epochs
    config = workdir / "study.yaml"
    config.write_text(yaml.safe_dump(study, sort_keys=False))
    command = [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    command += ["--configfile", str(config), "--cores", str(args.threads)]
    print("measuring study B end to end through Snakemake ...", flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    pipeline_seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    import pandas as pd

    runs = pd.read_csv(workdir / "results" / "rotnet_mnist_speed" / "tables" / "runs.csv")
    pipeline_accuracy = dict(zip(runs.protocol, runs.test_accuracy.round(4), strict=True))
    jobs = job_costs(workdir, "rotnet_mnist_speed")

    print("measuring study B end to end the notebook way ...", flush=True)
    script = NOTEBOOK_SCRIPT.format(threads=args.threads, data_dir=SHARED / "mnist", epochs=args.epochs)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    notebook_wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    notebook = json.loads(result.stdout.strip().splitlines()[-1])
    return {
        "pipeline_seconds": pipeline_seconds,
        "pipeline_test_accuracy": pipeline_accuracy,
        "notebook_seconds": notebook_wall,
        "notebook_test_accuracy": notebook["test_accuracy"],
        "command": " ".join(command),
        "jobs": jobs,
    }


def job_costs(workdir: Path, study: str):
    """Per job of the end-to-end run: its wall time (Snakemake's `benchmark` file) and,
    for training jobs, the seconds of its epochs (their progress lines); the rest is what
    the job pays besides training: starting Python, imports, reading and checking its
    inputs, building the model, writing its outputs."""
    import pandas as pd

    rows = []
    for tsv in sorted((workdir / "results" / study / "benchmarks").rglob("*.tsv")):
        relative = tsv.relative_to(workdir / "results" / study / "benchmarks").with_suffix("")
        wall = float(pd.read_csv(tsv, sep="\t")["s"].iloc[0])
        log = workdir / "logs" / study / relative.parts[0] / Path(*relative.parts[1:]).with_suffix(".log")
        text = log.read_text() if log.exists() else ""
        epochs = [float(v) for v in re.findall(r"  ([0-9.]+) s \(", text)]
        rows.append(
            {
                "job": relative.as_posix(),
                "wall_s": round(wall, 2),
                "epochs": len(epochs),
                "training_s": round(sum(epochs), 2),
                "other_s": round(wall - sum(epochs), 2),
            }
        )
    return rows


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for task in ("rotnet_mnist", "rotnet_fashion_mnist"):
        notebook = measure(f"notebook_{task}", args)
        ours = measure(f"pipeline_{task}", args)
        rows.append(
            {
                "measurement": f"pretext {task}",
                "notebook_images_per_s": round(notebook["images_per_s"], 1),
                "pipeline_images_per_s": round(ours["images_per_s"], 1),
                "ratio": round(ours["images_per_s"] / notebook["images_per_s"], 3),
                "notebook_final_train_accuracy": round(notebook["final_accuracy"], 4),
                "pipeline_final_train_accuracy": round(ours["final_accuracy"], 4),
            }
        )
        print(rows[-1], flush=True)
    e2e = None if args.skip_end_to_end else end_to_end(args)
    write_report(args, rows, e2e)


def write_report(args, rows, e2e):
    import pandas as pd

    table = pd.DataFrame(rows)
    if e2e:
        table = pd.concat(
            [
                table,
                pd.DataFrame(
                    [
                        {
                            "measurement": "study B end to end, 1 seed (seconds)",
                            "notebook_images_per_s": None,
                            "pipeline_images_per_s": None,
                            "ratio": round(e2e["notebook_seconds"] / e2e["pipeline_seconds"], 3),
                            "notebook_seconds": round(e2e["notebook_seconds"], 1),
                            "pipeline_seconds": round(e2e["pipeline_seconds"], 1),
                        }
                    ]
                ),
            ]
        )
    args.report.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.report.with_suffix(".csv"), index=False)
    lines = [
        "# Training speed: the pipeline against the notebook way",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine.describe()}; "
        f"{args.threads} TensorFlow threads, by "
        f"`.venv/bin/python benchmarks/speed.py {' '.join(sys.argv[1:])}`.",
        f"Study B pretext: {args.epochs} epochs of 40,000 images; study A network: {args.wide_epochs} epochs "
        f"of {args.wide_images} images. Images/s leave out the first epoch. ratio = pipeline / notebook "
        "(end to end: notebook seconds / pipeline seconds, so > 1 means the pipeline is faster).",
        "",
        table.to_markdown(index=False),
        "",
    ]
    if e2e:
        lines += [
            "Study B end to end, test accuracy on test images 300-599:",
            f"- pipeline: {e2e['pipeline_test_accuracy']}",
            f"- notebook way: {e2e['notebook_test_accuracy']}",
            "",
            f"Pipeline command: `{e2e['command']}`",
            "",
            "Where the end-to-end run's training jobs spend their time (wall: Snakemake's benchmark "
            "file; training: the sum of the job's epoch times; other: the rest, mostly starting "
            "Python and importing TensorFlow):",
            "",
            pd.DataFrame(e2e["jobs"]).to_markdown(index=False),
        ]
    args.report.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
