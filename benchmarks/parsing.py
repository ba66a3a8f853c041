"""How long `snakemake -n` takes for every preset, with the study check cached or not.

Every SLURM job and every re-run parses the workflow again. The full study check builds
Keras models (and so imports TensorFlow); its result is cached by the study's and the
library's hash in .snakemake/selfsup/, so only the first parse pays for it.

For each preset (config.yaml and studies/*.yaml, each with --configfile) in a scratch
copy of the workflow with no results (so the whole DAG is planned):
- cold: the cache folder removed before each repeat (the first parse of a study);
- warm: the cache filled (every later parse: cluster jobs, re-runs),
each repeated 3 times, median wall time, plus whether TensorFlow was imported.
Writes benchmarks/results/parsing.md and parsing.csv.

    .venv/bin/python benchmarks/parsing.py     # about 2 min on 2 cores
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
PARTS = ["Snakefile", "config.yaml", "rules", "scripts", "schemas", "profiles", "report", "envs", "selfsup"]
RESULTS = ROOT / "benchmarks" / "results"


def presets() -> list[Path]:
    return [ROOT / "config.yaml", *sorted((ROOT / "studies").glob("*.yaml"))]


def dry_run(workdir: Path, study: Path) -> tuple[float, bool, int]:
    """(seconds, whether TensorFlow was imported, jobs planned) of one `snakemake -n`."""
    command = [SNAKEMAKE, "--snakefile", str(workdir / "Snakefile"), "--directory", str(workdir)]
    command += ["--configfile", str(study), "-n", "--nolock"]
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=workdir, env=env)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(
            f"{study.name}: snakemake -n failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    tensorflow = any(
        line.startswith("import time:") and line.rsplit("|", 1)[1].strip() == "tensorflow"
        for line in result.stderr.splitlines()
    )
    jobs = 0
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == "total" and fields[1].isdigit():
            jobs = int(fields[1])
    return seconds, tensorflow, jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        for part in PARTS:
            source = ROOT / part
            if source.is_dir():
                shutil.copytree(source, workdir / part, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, workdir / part)
        cache = workdir / ".snakemake" / "selfsup"
        for study in presets():
            cold, warm = [], []
            for _ in range(args.repeats):
                shutil.rmtree(cache, ignore_errors=True)
                cold.append(dry_run(workdir, study))
            for _ in range(args.repeats):
                warm.append(dry_run(workdir, study))
            row = {
                "preset": study.relative_to(ROOT).as_posix(),
                "jobs": cold[0][2],
                "cold_s": round(statistics.median(r[0] for r in cold), 2),
                "warm_s": round(statistics.median(r[0] for r in warm), 2),
                "cold_imports_tensorflow": all(r[1] for r in cold),
                "warm_imports_tensorflow": any(r[1] for r in warm),
            }
            print(row, flush=True)
            rows.append(row)
    write(rows, args.repeats)


def write(rows: list[dict], repeats: int) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "parsing.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    load = os.getloadavg()[0]
    lines = [
        "# Parsing time: `snakemake -n` per preset",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores (1-minute load average "
        f"{load:.1f} at the end, the machine shared with other work), with `.venv/bin/python benchmarks/parsing.py`.",
        "Each preset with `--configfile` in a scratch copy of the workflow with no results (the whole DAG",
        f"is planned); median of {repeats} runs. cold: the study check's cache (.snakemake/selfsup/) removed",
        "before each run, so the check builds the Keras models; warm: the cache filled, as for every SLURM",
        "job and every re-run. tensorflow: whether the parse imported it (Python's -X importtime, on",
        "in every run; it adds a little to each time).",
        "",
        "| preset | jobs | cold (s) | warm (s) | cold imports tensorflow | warm imports tensorflow |",
        "|---|---:|---:|---:|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['preset']} | {row['jobs']} | {row['cold_s']:.2f} | {row['warm_s']:.2f} | "
            f"{'yes' if row['cold_imports_tensorflow'] else 'no'} | "
            f"{'yes' if row['warm_imports_tensorflow'] else 'no'} |"
        )
    (RESULTS / "parsing.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
