# Set-up and everyday commands. `make compare` and `make test` create .venv/ on first use.
# torch is pinned through constraints.txt so that pip never pulls a CUDA build onto a CPU-only
# machine; on a GPU machine, install the torch build you want into .venv first (TORCH_SPEC).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup compare test lint benchmark clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

compare: $(STAMP)
	$(BIN)/cnnvit compare

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

benchmark: $(STAMP)
	$(BIN)/python benchmarks/benchmark.py --dataset ../shared/data/fashion_mnist \
		--max-train-samples 10000 --max-eval-samples 2000 --pairs micro,mini \
		--epochs 2 --repeats 3 --out benchmarks/results

clean-venv:
	rm -rf $(VENV)
