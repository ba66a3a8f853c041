"""GPU slots on a machine without GPUs: fake device lists, real processes and locks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from selfsup import devices

# A training job's first step, as a process: claim a slot, report it, hold it until told.
HOLDER = """
import os, sys, time
from pathlib import Path
from selfsup.devices import claim_gpu_slot
gpu = claim_gpu_slot(poll_s=0.05)
assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"  # as nvidia-smi numbers them
Path(sys.argv[1]).write_text(repr((gpu, os.environ.get("CUDA_VISIBLE_DEVICES"))))
while not Path(sys.argv[2]).exists():
    time.sleep(0.02)
"""


def _environment(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")}
    env.update({devices.LOCK_DIR_VARIABLE: str(tmp_path / "locks"), **extra})
    return env


def _start(tmp_path, name, env):
    report, release = tmp_path / f"{name}.claimed", tmp_path / f"{name}.release"
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(report), str(release)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, report, release


def _wait_for(path: Path, seconds: float = 30.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{path.name} never written")


def test_jobs_spread_over_gpus_share_each_by_slots_and_wait_when_all_are_taken(tmp_path):
    env = _environment(tmp_path, SELFSUP_GPUS="0,1", SELFSUP_JOBS_PER_GPU="2")
    jobs = [_start(tmp_path, f"job{i}", env) for i in range(4)]
    try:
        seen = [eval(_wait_for(report)) for _, report, _ in jobs]  # noqa: S307 - our own repr
        # Each job sees exactly the GPU it claimed; two jobs on each of the two GPUs.
        assert all(gpu == visible for gpu, visible in seen)
        assert sorted(gpu for gpu, _ in seen) == ["0", "0", "1", "1"]
        # A fifth job finds every slot taken and waits, saying how to avoid it...
        fifth, report, release = _start(tmp_path, "job4", env)
        time.sleep(1.0)
        assert not report.exists()
        # ...until a job ends: killed outright, its lock goes with it.
        first_gpu = seen[0][0]
        jobs[0][0].send_signal(signal.SIGKILL)
        assert eval(_wait_for(report)) == (first_gpu, first_gpu)  # noqa: S307
        release.touch()
        assert fifth.wait(30) == 0
        message = fifth.stderr.read()
        assert "all 4 slots taken (2 GPUs x 2); waiting" in message
        assert "--resources gpu=4" in message
    finally:
        for process, _, release in jobs:
            release.touch()
            process.wait(30)


def test_one_job_per_gpu_by_default_in_an_order_that_fills_every_gpu_first():
    assert devices.slot_order(["0", "1", "2"], 2) == [
        ("0", 0), ("1", 0), ("2", 0), ("0", 1), ("1", 1), ("2", 1),
    ]  # fmt: skip
    assert devices.jobs_per_gpu({}) == 1


def test_gpus_chosen_by_the_scheduler_are_left_alone(tmp_path):
    env = {
        "CUDA_VISIBLE_DEVICES": "3",
        devices.GPUS_VARIABLE: "0,1",
        devices.LOCK_DIR_VARIABLE: str(tmp_path),
    }
    assert devices.claim_gpu_slot(env, stream=open(os.devnull, "w")) is None
    assert env["CUDA_VISIBLE_DEVICES"] == "3"
    assert not list(tmp_path.iterdir())


def test_a_machine_without_gpus_claims_nothing(tmp_path):
    env = {devices.GPUS_VARIABLE: "", devices.LOCK_DIR_VARIABLE: str(tmp_path)}
    assert devices.claim_gpu_slot(env) is None
    assert "CUDA_VISIBLE_DEVICES" not in env
    # Without the variable, nvidia-smi decides; on this machine it is absent or lists none.
    assert devices.visible_gpus({"PATH": str(tmp_path)}) == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SELFSUP_JOBS_PER_GPU", "0"), ("SELFSUP_JOBS_PER_GPU", "two"), ("SELFSUP_GPU_MEMORY_MB", "4GB")],
)
def test_malformed_settings_fail_before_a_slot_is_taken(tmp_path, variable, value):
    env = {devices.GPUS_VARIABLE: "0", devices.LOCK_DIR_VARIABLE: str(tmp_path), variable: value}
    with pytest.raises(ValueError, match=f"{variable} must be .*{value!r}"):
        devices.claim_gpu_slot(env)
    assert "CUDA_VISIBLE_DEVICES" not in env


class _FakeConfig:
    """tf.config's device calls, recorded, with two fake GPUs."""

    class LogicalDeviceConfiguration:
        def __init__(self, memory_limit):
            self.memory_limit = memory_limit

    def __init__(self):
        self.calls = []
        self.experimental = self

    def list_physical_devices(self, kind):
        assert kind == "GPU"
        return [type("Device", (), {"name": f"/physical_device:GPU:{i}"})() for i in range(2)]

    def set_memory_growth(self, device, enabled):
        self.calls.append(("growth", device.name, enabled))

    def set_logical_device_configuration(self, device, configurations):
        self.calls.append(("limit", device.name, configurations[0].memory_limit))


def test_tensorflow_takes_gpu_memory_as_needed_or_a_fixed_share():
    tf = type("FakeTF", (), {})()
    tf.config = _FakeConfig()
    devices.configure_tensorflow_gpus({}, tf=tf)
    assert tf.config.calls == [("growth", f"/physical_device:GPU:{i}", True) for i in range(2)]
    tf.config = _FakeConfig()
    devices.configure_tensorflow_gpus({devices.MEMORY_VARIABLE: "3000"}, tf=tf)
    assert tf.config.calls == [("limit", f"/physical_device:GPU:{i}", 3000) for i in range(2)]
