# Set-up and everyday commands. `make compare` and `make test` create .venv/ on first use.
#
# Set-up installs torch first (TORCH_SPEC), then everything else with pip, constrained by
# constraints.txt (torch pinned, so pip never swaps in another torch build, which on PyPI pulls
# several GB of CUDA packages onto CPU-only machines) and by requirements.lock (the exact versions
# the tests passed with), so a fresh set-up reproduces them. On a GPU machine, point TORCH_SPEC at
# the CUDA build you want (see README).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
LOWEST := build/lowest

.PHONY: setup upgrade compare test test-fast test-lowest lint benchmark clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -c constraints.txt -c requirements.lock -e ".[dev]"
	touch $(STAMP)

# Refresh requirements.lock to the newest versions pyproject.toml allows (torch stays at the pin),
# for every platform and Python version at once, then install them.
upgrade: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra dev -c constraints.txt --universal --upgrade \
		--quiet --custom-compile-command "make upgrade" -o requirements.lock
	$(MAKE) setup

compare: $(STAMP)
	$(BIN)/cnnvit compare

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Everything but the tests marked slow (resume, distributed, Ray, browser, notebook, study, fuzz):
# for the edit-test loop: 84 s of CPU time at 1 thread on a 2-core Xeon (273 s before the tiny
# runs were shrunk; wall time on a busy machine 4 min against 9); `make test` runs all.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# The floors in pyproject.toml are true: a separate venv gets every runtime dependency at its
# lowest allowed version (uv's lowest-direct resolution; the dev extra's tools are left out) and
# runs a short compare. torch stays at the pin: pip installs it first, alone (--no-deps, so that
# its own requirements such as filelock are left to uv and go to their floors too), and uv keeps
# the installed build, so a CPU-only machine downloads no CUDA packages.
test-lowest: $(STAMP)
	rm -rf $(LOWEST)
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install --quiet --no-deps -c constraints.txt "$(TORCH_SPEC)"
	$(BIN)/uv pip install --quiet --python $(LOWEST)/bin/python --resolution lowest-direct \
		-c constraints.txt -e .
	$(BIN)/uv pip list --python $(LOWEST)/bin/python
	$(LOWEST)/bin/cnnvit compare --epochs 1 --max-train-samples 200 --max-eval-samples 100 \
		--image-size 16 --cnn convnext-nano --vit vit-nano --output-dir $(LOWEST)/run

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

benchmark: $(STAMP)
	$(BIN)/python benchmarks/benchmark.py --dataset ../shared/data/fashion_mnist \
		--max-train-samples 10000 --max-eval-samples 2000 --pairs micro,mini --lr 5e-4 \
		--epochs 2 --repeats 3 --output-dir benchmarks/results

clean-venv:
	rm -rf $(VENV) $(LOWEST)
