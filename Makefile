# Two entry points for a fresh machine: `make run` and `make test`.
# Both build .venv from the pinned requirements first (once; again when they change).
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3
CORES ?= all
# GPU=1 adds the CUDA libraries of the pinned TensorFlow (make run GPU=1 on a GPU node).
GPU ?= 0
TF_VERSION := $(shell sed -n 's/^tensorflow==//p' requirements.txt)
CUDA_STAMP := $(if $(filter 1,$(GPU)),$(VENV)/.cuda,)

.PHONY: venv run test lint format clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps --editable .
	touch $@

$(VENV)/.cuda: $(VENV)/.installed
	$(BIN)/pip install --quiet "tensorflow[and-cuda]==$(TF_VERSION)"
	touch $@

venv: $(VENV)/.installed $(CUDA_STAMP)

run: venv
	$(BIN)/snakemake --cores $(CORES)

# Unit tests are mostly tiny single-threaded trainings: TEST_WORKERS processes share the
# cores (pytest-xdist, a file per worker so module fixtures are built once). Workflow tests
# run after them, alone: each already runs two jobs at once under --cores 2, and the
# kill-and-resume tests wait on a job's progress.
TEST_WORKERS ?= 2

test: venv
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/pytest -ra --durations=15 -n $(TEST_WORKERS) --dist loadfile --ignore=tests/workflow tests
	$(BIN)/pytest -ra --durations=25 tests/workflow

format: venv
	$(BIN)/ruff format selfsup scripts tests benchmarks
	$(BIN)/snakefmt Snakefile rules

clean:
	rm -rf $(VENV) .snakemake
