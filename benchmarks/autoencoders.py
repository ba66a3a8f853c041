"""Study C at a CPU scale: the autoencoder family against supervised training, on real data.

Derives a smaller study from studies/autoencoders.yaml (fewer unlabeled images, fewer
pretext epochs, a narrower encoder, budgets 100 / 1,000), runs it with the real
workflow (Snakemake) in benchmarks/out/, and writes the accuracy table, the wall time
and the exact settings to benchmarks/results/autoencoders.md (+ .csv).

    .venv/bin/python benchmarks/autoencoders.py            # about 30 minutes on 2 cores
    .venv/bin/python benchmarks/autoencoders.py --help

The question it answers (STUDIES.md, study C): with 100 labels, does the best frozen
self-supervised encoder beat the same network trained from scratch?
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import yaml
from workflow import run_study

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "studies" / "autoencoders.yaml"
# The frozen-encoder protocol: the head alone trains.
FROZEN = "frozen"
RECONSTRUCTION = ("autoencoder", "denoising_autoencoder", "inpainting")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", choices=["fashion_mnist", "mnist"], default="fashion_mnist")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder of the four IDX files (default: <repo>/../shared/data/<fashion-mnist|mnist>)",
    )
    parser.add_argument("--unlabeled", type=int, default=20000, help="unlabeled images for the pretext tasks")
    parser.add_argument("--pretext-epochs", type=int, default=4)
    parser.add_argument("--downstream-epochs", type=int, default=50, help="upper bound; early stopping")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--budgets", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--filters", type=int, nargs="+", default=[16, 32], help="small_cnn conv widths")
    parser.add_argument(
        "--dense", type=int, nargs="+", default=[64], help="small_cnn dense layers (the code)"
    )
    parser.add_argument("--test", type=int, default=10000, help="test images evaluated (the first N)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "autoencoders")
    parser.add_argument(
        "--snakemake-args",
        default="",
        help='extra Snakemake arguments, e.g. "--rerun-triggers mtime" to keep results a library edit made stale',
    )
    parser.add_argument("--report", type=Path, default=ROOT / "benchmarks" / "results" / "autoencoders.md")
    return parser.parse_args(argv)


def derive_study(args) -> dict:
    """The preset with the scale reduced; everything else (methods, protocols, options) kept."""
    study = yaml.safe_load(PRESET.read_text())
    study["study"] = "autoencoders_benchmark"
    study["description"] = (
        f"Study C at CPU scale: {args.unlabeled} unlabeled images, {args.pretext_epochs} pretext epochs, "
        f"budgets {args.budgets}, seeds {args.seeds}."
    )
    folder = "fashion-mnist" if args.dataset == "fashion_mnist" else "mnist"
    data_dir = args.data_dir or ROOT.parent / "shared" / "data" / folder
    if not data_dir.is_dir():
        sys.exit(f"no {args.dataset} IDX files: {data_dir} does not exist; pass --data-dir")
    # The shared Fashion-MNIST images are not the official bytes (MD5 differs from the published one).
    study["dataset"] = {"name": args.dataset, "data_dir": str(data_dir.resolve()), "verify_checksums": False}
    labeled_stop = study["split"]["labeled"][1]
    study["split"] = {
        "labeled": study["split"]["labeled"],
        "unlabeled": [labeled_stop, labeled_stop + args.unlabeled],
        "test": [0, args.test],
    }
    study["seeds"] = list(args.seeds)
    study["budgets"] = list(args.budgets)
    study["encoder"] = {"name": "small_cnn", "options": {"filters": args.filters, "dense": args.dense}}
    for name, entry in study["pretext"].items():
        entry["epochs"] = args.pretext_epochs
        options = entry.setdefault("options", {})
        if entry.get("method", name) in RECONSTRUCTION and options.get("decoder") != "mlp":
            # Narrower decoders to match the narrower encoder; they cost as much as it does.
            options["decoder_filters"] = [args.filters[-1], args.filters[0]]
    downstream = study["downstream"]
    downstream.update(epochs=args.downstream_epochs, batch_size=32)
    return study


def run_workflow(study: dict, args) -> tuple[float, list[str]]:
    return run_study(study, args.out, args.cores, shlex.split(args.snakemake_args))


def job_times(results: Path) -> pd.DataFrame:
    """Seconds per pretext job, from Snakemake's benchmark files."""
    rows = []
    for tsv in sorted((results / "benchmarks" / "pretext" / "all").glob("*/seed*.tsv")):
        seconds = pd.read_csv(tsv, sep="\t")["s"].iloc[0]
        history = pd.read_csv(results / "encoders" / "all" / tsv.parent.name / tsv.stem / "history.csv")
        rows.append(
            {
                "pretext": tsv.parent.name,
                "seed": tsv.stem,
                "seconds": seconds,
                "final_loss": history["loss"].iloc[-1],
            }
        )
    return pd.DataFrame(rows)


def verdict(summary: pd.DataFrame, budget: int) -> str:
    rows = summary[summary.n_labels == budget]
    baseline = rows[rows.protocol == "supervised"].iloc[0]
    frozen = rows[rows.protocol == FROZEN].sort_values("test_mean", ascending=False).iloc[0]
    best = rows[rows.method != "none"].sort_values("test_mean", ascending=False).iloc[0]
    beats = frozen.test_mean > baseline.test_mean
    return (
        f"- {budget} labels: best frozen encoder **{frozen.method} + {FROZEN}** "
        f"{100 * frozen.test_mean:.2f} ± {100 * frozen.test_std:.2f}% vs supervised from scratch "
        f"{100 * baseline.test_mean:.2f} ± {100 * baseline.test_std:.2f}%: "
        f"{'beats it' if beats else 'does NOT beat it'} "
        f"({100 * (frozen.test_mean - baseline.test_mean):+.2f} points). Best self-supervised classifier "
        f"overall: {best.method} + {best.protocol}, {100 * best.test_mean:.2f} ± {100 * best.test_std:.2f}%."
    )


def write_report(study: dict, seconds: float, command: list[str], args) -> None:
    results = args.out / "results" / study["study"]
    summary = pd.read_csv(results / "tables" / "accuracy.csv")
    table = (results / "tables" / "accuracy.md").read_text().strip()
    args.report.parent.mkdir(parents=True, exist_ok=True)
    summary.to_csv(args.report.with_suffix(".csv"), index=False)
    times = job_times(results)
    invocation = shlex.join([".venv/bin/python", "benchmarks/autoencoders.py", *sys.argv[1:]])
    lines = [
        "# Benchmark: study C (autoencoder family) at CPU scale",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{invocation}`.",
        f"Wall time of the whole workflow: **{seconds / 60:.1f} min** on {os.cpu_count()} cores "
        f"({platform.processor() or platform.machine()}), shared with other jobs.",
        "",
        "## Does a frozen self-supervised encoder beat training from scratch?",
        "",
        *[verdict(summary, budget) for budget in sorted(summary.n_labels.unique())],
        "",
        "## Accuracy table",
        "",
        table,
        "",
        "`none + supervised` is the same encoder and head trained from scratch on the labels alone; "
        "`frozen` trains the head on the frozen encoder, `partial_2` also its last two layers "
        "(conv4, dense1), `finetune` everything. Every classifier has the same parameter count.",
        "",
        "## Pretext jobs",
        "",
        times.to_markdown(index=False, floatfmt=".3f") if len(times) else "(no benchmark files)",
        "",
        "## Exact settings",
        "",
        f"Snakemake command (run in `{args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}`):",
        "",
        "```",
        shlex.join(command),
        "```",
        "",
        "Study file (derived from `studies/autoencoders.yaml`):",
        "",
        "```yaml",
        yaml.safe_dump(study, sort_keys=False).strip(),
        "```",
        "",
    ]
    args.report.write_text("\n".join(lines))
    print(f"wrote {args.report} and {args.report.with_suffix('.csv')}")


def main(argv=None):
    args = parse_args(argv)
    study = derive_study(args)
    seconds, command = run_workflow(copy.deepcopy(study), args)
    write_report(study, seconds, command, args)


if __name__ == "__main__":
    main()
