"""Workflow-script helpers: where a killed training job may resume from."""

from __future__ import annotations

import os
import subprocess
import sys

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


def test_a_training_job_starts_without_scikit_learn_and_can_still_import_it(tmp_path):
    """Keras imports scikit-learn for wrappers no stage uses (about 1 s of every training
    job's start); start_training_job keeps it out, and a probe can still import it after.
    (The job's output goes to its log, so what it loaded comes back in a file.)"""
    script = (
        "import sys\n"
        "from selfsup.jobs import start_training_job\n"
        f"start_training_job({str(tmp_path / 'job.log')!r})\n"
        "from selfsup.stages import downstream, pretext\n"
        "loaded = sorted(name for name in ('tensorflow', 'keras', 'sklearn') if name in sys.modules)\n"
        "import keras, numpy as np\n"
        "keras.layers.Dense(2)(np.ones((1, 3), 'float32'))  # Keras works\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "LogisticRegression().fit([[0.0], [1.0]], [0, 1])\n"
        f"open({str(tmp_path / 'loaded.txt')!r}, 'w').write(' '.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (tmp_path / "job.log").read_text()[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "loaded.txt").read_text().split() == ["keras", "tensorflow"]  # at the stages' import
