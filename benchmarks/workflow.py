"""What the benchmarks that run a derived study through the real workflow share."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def run_study(study: dict, out: Path, cores: int, extra_args: list[str] = ()) -> tuple[float, list[str]]:
    """Write `study` to out/study.yaml and run it with Snakemake in `out`; returns the wall
    seconds and the command. Exits with the log's path when Snakemake fails."""
    out.mkdir(parents=True, exist_ok=True)
    configfile = out / "study.yaml"
    configfile.write_text(yaml.safe_dump(study, sort_keys=False))
    command = [
        str(SNAKEMAKE),
        "-s",
        str(ROOT / "Snakefile"),
        "--configfile",
        str(configfile),
        "--cores",
        str(cores),
        # Pretext jobs train longest: give them every core; downstream jobs are short and
        # mostly start-up, so run them side by side on one thread each.
        "--set-threads",
        f"pretext={cores}",
        "downstream=1",
        "--rerun-incomplete",
        *extra_args,
    ]
    print("running:", shlex.join(command), f"(in {out})", flush=True)
    start = time.perf_counter()
    with open(out / "snakemake.log", "w") as log:
        result = subprocess.run(command, cwd=out, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if result.returncode:
        sys.exit(f"snakemake failed ({result.returncode}); see {out / 'snakemake.log'}")
    return seconds, command
