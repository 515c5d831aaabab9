# Two commands: `make test` and `make book`. Both create .venv if absent and install into it.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SCALE ?= quick
export SCALE
# The notebooks and tests run on the shared offline copy when it is there (see README).
STAMP := $(VENV)/.installed

.PHONY: install test test-unit test-book book lab bench bench-quick lint clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[book,test,bench]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(PY) -m ruff check interpretable tests benchmarks book

test-unit: install
	$(PY) -m pytest -q tests

test-book: install
	$(PY) -m pytest -q --nbval-lax --nbval-cell-timeout=900 -p no:cacheprovider book

test: install lint
	$(PY) -m pytest -q tests book --nbval-lax --nbval-cell-timeout=900

book: install
	rm -rf _build/html _build/.doctrees
	$(VENV)/bin/jupyter-book build . --warningiserror --keep-going
	@test -f _build/html/index.html && echo "Book written to _build/html/index.html"

lab: install
	$(VENV)/bin/jupyter lab book

bench: install
	$(PY) -m benchmarks

# CI: every benchmark runs end to end at toy sizes (checks that it runs, not the targets);
# written outside the repository so the committed full-run results stay as they are.
bench-quick: install
	$(PY) -m benchmarks --quick --out $${TMPDIR:-/tmp}/interpretable-bench-quick.json

clean:
	rm -rf _build .pytest_cache
