"""Helpers to run the real workflow with Snakemake in temporary directories."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
WORKFLOW_PARTS = ["Snakefile", "config.yaml", "rules", "scripts", "schemas", "profiles", "report", "envs"]
# Library code lives in the copy too, so a test can edit it without touching the repo.
LIBRARY = "selfsup"


def copy_workflow(dest: Path) -> Path:
    """A private copy of the workflow (and the library sources it fingerprints) in `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in [*WORKFLOW_PARTS, LIBRARY]:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, dest / part)
    return dest


def load_study(name: str) -> dict:
    return yaml.safe_load((REPO / "tests" / "data" / name).read_text())


def write_study(path: Path, study: dict) -> Path:
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def snakemake(
    workdir: Path, configfile: Path | None, *args: str, timeout: int = 900, env: dict | None = None
):
    """Run snakemake in `workdir` (with the workflow copied there); returns the finished
    process. `env`: variables added to the jobs' environment."""
    command = [SNAKEMAKE, "--snakefile", str(workdir / "Snakefile"), "--directory", str(workdir)]
    if configfile is not None:
        command += ["--configfile", str(configfile)]
    environment = {**os.environ, **env} if env else None
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=timeout, cwd=workdir, env=environment
    )


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake run or dry-run, as {rule: count}."""
    if "Nothing to be done" in output:
        return {}
    table = output.split("Job stats:", 1)[1]
    counts = {}
    for line in table.splitlines()[3:]:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match:
            break
        if match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


def stale_jobs(workdir: Path, configfile: Path) -> dict[str, int]:
    result = snakemake(workdir, configfile, "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    return job_counts(result.stdout)
