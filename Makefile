# Sieve — set-up, the offline demo review, and the tests.
#   make demo   set up (first run compiles llama-cpp-python: ≈4.5 min on 2 cores) and review examples/change.patch
#   make test   set up with the training and test extras, then run the whole test suite (what CI runs)
#   make test-fast  the same set-up, the suite without the tests marked slow (real models, installs, training)
#   make pin REF=<commit>  point every copy-paste snippet (examples/, README, docs) at that commit of Sieve
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup setup-dev demo test test-fast bench pin clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel setuptools

$(VENV)/.sieve-base: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.sieve-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[train,dev]'
	touch $@

setup: $(VENV)/.sieve-base

setup-dev: $(VENV)/.sieve-dev

demo: setup
	$(BIN)/sieve review --diff examples/change.patch --repo examples/demo

test: setup-dev
	$(BIN)/python -m pytest -q

test-fast: setup-dev
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup-dev
	$(BIN)/python -m benchmarks.diff_parse
	$(BIN)/python -m benchmarks.rate_latency
	$(BIN)/python -m benchmarks.accuracy

PINNED := examples/github/*.yml examples/gitlab-ci.yml README.md docs/*.md

pin:
	@printf '%s\n' '$(REF)' | grep -Eqx '[0-9a-f]{40}' || { echo "error: REF must be a full 40-hex commit id" >&2; exit 64; }
	@git cat-file -e '$(REF)^{commit}' || { echo "error: $(REF) is not a commit of this repository" >&2; exit 64; }
	sed -i -E 's#(sieve-review/sieve[@/])[0-9a-f]{40}#\1$(REF)#g' $(PINNED)

clean:
	rm -rf $(VENV) .pytest_cache
