"""selfsup.fingerprints: a job's code fingerprint covers every library module its script
imports, and no other."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from selfsup import fingerprints, pretext

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "scripts").glob("*.py"))


def test_a_pretext_job_runs_its_stage_and_method_and_not_the_others():
    files = fingerprints.library_files(ROOT / "scripts" / "pretext.py", pretext.method_module("rotation"))
    for module in ["stages/pretext.py", "stages/common.py", "pretext/rotation.py", "monitor.py", "jobs.py"]:
        assert module in files
    # monitor.py's kNN vote lives in probes.py: found through the import, listed nowhere.
    assert "probes.py" in files
    for module in ["pretext/simclr.py", "stages/downstream.py", "downstream.py", "report/tables.py"]:
        assert module not in files


def test_report_jobs_run_no_training_code():
    for script in ["accuracy_table", "accuracy_figure", "class_probabilities", "knn_figure"]:
        files = fingerprints.library_files(ROOT / "scripts" / f"{script}.py")
        assert any(f.startswith("report/") for f in files)
        assert not [f for f in files if f.startswith("stages/") or f in ("training.py", "encoders.py")]


def test_imports_inside_functions_and_relative_imports_count(tmp_path, monkeypatch):
    library = tmp_path / "selfsup"
    (library / "sub").mkdir(parents=True)
    (library / "__init__.py").write_text("")
    (library / "sub" / "__init__.py").write_text("")
    (library / "sub" / "lazy.py").write_text("def f():\n    from . import near\n")
    (library / "sub" / "near.py").write_text("X = 1\n")
    (library / "unused.py").write_text("")
    script = tmp_path / "job.py"
    script.write_text("def main():\n    from selfsup.sub.lazy import f\n")
    monkeypatch.setattr(fingerprints, "LIBRARY", library)
    fingerprints.imported_modules.cache_clear()
    fingerprints.fingerprint.cache_clear()
    try:
        assert fingerprints.library_files(script) == [
            "__init__.py",
            "sub/__init__.py",
            "sub/lazy.py",
            "sub/near.py",
        ]
        before = fingerprints.fingerprint(script)
        fingerprints.fingerprint.cache_clear()
        (library / "unused.py").write_text("# an edit\n")
        assert fingerprints.fingerprint(script) == before
        fingerprints.fingerprint.cache_clear()
        (library / "sub" / "near.py").write_text("X = 2\n")
        assert fingerprints.fingerprint(script) != before
    finally:
        fingerprints.imported_modules.cache_clear()
        fingerprints.fingerprint.cache_clear()


def test_unknown_entry_is_an_error():
    with pytest.raises(ValueError, match="neither a library module nor a file"):
        fingerprints.library_files("selfsup.no_such_module")


# Runs each script's import statements in one fresh process, forgetting the library's
# modules between scripts, and reports the library files each one loaded.
IMPORTS_OF_EACH_SCRIPT = """
import ast, json, sys
result = {}
for path in sys.argv[1:]:
    for name in [n for n in sys.modules if n == "selfsup" or n.startswith("selfsup.")]:
        del sys.modules[name]
    tree = ast.parse(open(path).read())
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    exec(compile(ast.Module(body=imports, type_ignores=[]), path, "exec"), {})
    result[path] = sorted(
        m.__file__ for n, m in sys.modules.items()
        if (n == "selfsup" or n.startswith("selfsup.")) and getattr(m, "__file__", None)
    )
print(json.dumps(result))
"""


def test_every_module_a_script_loads_is_in_its_fingerprint():
    out = subprocess.run(
        [sys.executable, "-c", IMPORTS_OF_EACH_SCRIPT, *map(str, SCRIPTS)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    ).stdout
    loaded = json.loads(out.splitlines()[-1])
    assert len(loaded) == len(SCRIPTS)
    for script, files in loaded.items():
        declared = set(fingerprints.library_files(script))
        found = {Path(f).resolve().relative_to(fingerprints.LIBRARY).as_posix() for f in files}
        assert found <= declared, (script, found - declared)


@pytest.mark.parametrize("name", sorted(pretext.METHODS))
def test_a_method_module_brings_the_library_files_it_imports(name):
    files = fingerprints.library_files(pretext.method_module(name))
    assert pretext.method_module(name).removeprefix("selfsup.").replace(".", "/") + ".py" in files
    assert "pretext/base.py" in files
