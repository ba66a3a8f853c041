"""Workflow-script helpers: where a killed training job may resume from."""

from __future__ import annotations

import os

from selfsup.jobs import resume_dir


def _inputs(tmp_path):
    data, split = tmp_path / "data.h5", tmp_path / "split.h5"
    data.write_bytes(b"images")
    split.write_bytes(b"indices")
    return [str(data), str(split)]


def test_same_settings_and_inputs_resume_in_the_same_folder(tmp_path):
    inputs = _inputs(tmp_path)
    first = resume_dir(tmp_path / "run", ["settings", "code"], inputs)
    first.mkdir(parents=True)
    # Input order is Snakemake's business, not part of the key.
    assert resume_dir(tmp_path / "run", ["settings", "code"], inputs[::-1]) == first
    assert first.is_dir()


def test_a_rewritten_input_starts_afresh_and_drops_the_old_state(tmp_path):
    # A pretext model re-run upstream: same settings, same path, new file.
    inputs = _inputs(tmp_path)
    old = resume_dir(tmp_path / "run", ["settings"], inputs)
    old.mkdir(parents=True)
    stat = os.stat(inputs[0])
    os.utime(inputs[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    new = resume_dir(tmp_path / "run", ["settings"], inputs)
    assert new != old
    assert not old.exists()


def test_changed_settings_or_code_start_afresh(tmp_path):
    inputs = _inputs(tmp_path)
    base = resume_dir(tmp_path / "run", [{"epochs": 10}, "code-a"], inputs)
    assert resume_dir(tmp_path / "run", [{"epochs": 12}, "code-a"], inputs) != base
    assert resume_dir(tmp_path / "run", [{"epochs": 10}, "code-b"], inputs) != base
