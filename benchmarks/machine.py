"""The machine a benchmark ran on, for its result file: CPU model and the flags that
decide TensorFlow's kernels (AVX2, AVX-512, AMX), core count, Python."""

from __future__ import annotations

import os
import platform
import subprocess


def cpu_flags() -> list[str]:
    """The lscpu flags that pick TensorFlow's CPU kernels (avx*, amx*, fma, sse4*)."""
    fields = _lscpu()
    return [f for f in fields.get("Flags", "").split() if f.startswith(("avx", "amx", "fma", "sse4"))]


def describe() -> str:
    fields = _lscpu()
    flags = cpu_flags()
    return (
        f"{fields.get('Model name', '?').strip()}, {os.cpu_count()} cores, {platform.machine()}, "
        f"flags {' '.join(flags) or 'none of avx/amx/fma/sse4'}; Python {platform.python_version()}"
    )


def _lscpu() -> dict:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return {}
    return {
        key.strip(): value.strip()
        for key, value in (line.split(":", 1) for line in text.splitlines() if ":" in line)
    }
