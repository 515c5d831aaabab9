# Two commands: `make test` and `make book`. Both create .venv if absent and install into it.
# `make check-book` opens the built book in headless Chromium (tools/check_book.py);
# `make check-lab` runs chapters in JupyterLab in headless Chromium (tools/check_lab.py).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SCALE ?= quick
export SCALE
# The notebooks and tests run on the shared offline copy when it is there (see README).
STAMP := $(VENV)/.installed

.PHONY: install git-filter test test-unit test-book book book-assets browser check-book lab \
	check-lab bench bench-quick lint clean time-book

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[lab,book,test,bench]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP) git-filter

# Notebooks never reach a commit with outputs: .gitattributes sends *.ipynb through the
# `nbstripout` filter, defined here in .git/config with this venv's nbstripout (the `test`
# extra). --keep-id keeps the cells' ids; the extra keys keep language_info as committed
# ({"name": "python"}) when JupyterLab fills it in. Skipped outside a git clone, and when git
# will not write the config (another user's clone): `make lab` must still work there.
NBSTRIPOUT := '$(abspath $(PY))' -m nbstripout --keep-id
NBSTRIPOUT_KEYS := metadata.language_info.codemirror_mode metadata.language_info.file_extension \
	metadata.language_info.mimetype metadata.language_info.nbconvert_exporter \
	metadata.language_info.pygments_lexer metadata.language_info.version
git-filter: $(STAMP)
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1 && \
	    [ "$$(git config --get filter.nbstripout.clean)" != "$(NBSTRIPOUT)" ]; then \
	  git config filter.nbstripout.clean "$(NBSTRIPOUT)" && \
	  git config filter.nbstripout.smudge cat && \
	  git config filter.nbstripout.required true && \
	  git config filter.nbstripout.extrakeys "$(NBSTRIPOUT_KEYS)" && \
	  git config diff.ipynb.textconv "$(NBSTRIPOUT) -t" && \
	  echo "git filter nbstripout installed: notebooks are committed without outputs" || \
	  echo "could not install the nbstripout git filter (git config failed)" >&2; \
	fi

lint: install
	$(PY) -m ruff check interpretable tests benchmarks book tools

test-unit: install
	$(PY) -m pytest -q tests

test-book: install
	$(PY) -m pytest -q --nbval-lax --nbval-cell-timeout=900 -p no:cacheprovider book

test: install lint
	$(PY) -m pytest -q tests book --nbval-lax --nbval-cell-timeout=900

# The book serves its own MathJax and Jupyter widget manager (no CDN: it renders offline).
# package.json / package-lock.json pin them; `npm ci` installs them into node_modules/ and
# book-assets copies what the pages load into $(ASSETS), which _config.yml adds to
# html_static_path (so they end up in _build/html/_static/mathjax and .../jupyter-widgets).
NPM ?= npm
ASSETS := _build/assets
MATHJAX := node_modules/mathjax/es5
WIDGETS := node_modules/@jupyter-widgets/html-manager/dist
# the browser `make check-book` drives (Debian's chromium; any Chrome/Chromium will do)
CHROMIUM ?= /usr/bin/chromium
export CHROMIUM
# Debian packages are installed only where missing, and only as root (CI is root)
define apt_install
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's $(1) (apt-get)"; \
	  (apt-get install -y -qq $(1) >/dev/null 2>&1 || \
	   (apt-get update -qq && apt-get install -y -qq $(1) >/dev/null)) \
	  || { echo "apt-get install $(1) failed" >&2; exit 1; }; \
	else \
	  echo "$(2) is missing: install $(1) (as root: apt-get install $(1))" >&2; exit 1; \
	fi
endef

node_modules/.installed: package.json package-lock.json
	@command -v $(NPM) >/dev/null || { $(call apt_install,nodejs npm,npm); }
	$(NPM) ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

book-assets: node_modules/.installed
	rm -rf $(ASSETS)
	mkdir -p $(ASSETS)/mathjax/input/tex $(ASSETS)/mathjax/output/chtml/fonts \
	  $(ASSETS)/jupyter-widgets
	cp $(MATHJAX)/tex-mml-chtml.js node_modules/mathjax/LICENSE $(ASSETS)/mathjax/
	cp -r $(MATHJAX)/a11y $(MATHJAX)/sre $(MATHJAX)/ui $(ASSETS)/mathjax/
	cp -r $(MATHJAX)/input/tex/extensions $(ASSETS)/mathjax/input/tex/
	cp -r $(MATHJAX)/output/chtml/fonts/woff-v2 $(ASSETS)/mathjax/output/chtml/fonts/
	cp $(WIDGETS)/embed.js $(WIDGETS)/embed.js.LICENSE.txt $(WIDGETS)/*.woff* $(WIDGETS)/*.ttf \
	  $(WIDGETS)/*.eot $(WIDGETS)/*.svg $(ASSETS)/jupyter-widgets/

book: install book-assets
	rm -rf _build/html _build/.doctrees
	$(VENV)/bin/jupyter-book build . --warningiserror --keep-going
	@test -f _build/html/index.html && echo "Book written to _build/html/index.html"

# Every chapter's run time at $(SCALE), per chapter and per cell, as make book executes it
# (on a quiet machine: pause the lanes first). The committed measurements in benchmarks/results/
# are what each chapter's first line tells readers (tests/test_book_timings.py checks it).
time-book: install
	$(PY) tools/time_chapters.py --scale $(SCALE) --out benchmarks/results/book_times_$(SCALE).json

browser:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$(CHROMIUM)" != /usr/bin/chromium ]; then \
	    echo "no browser at CHROMIUM=$(CHROMIUM)" >&2; exit 1; \
	  fi; \
	  $(call apt_install,chromium,$(CHROMIUM)); \
	fi
	@$(CHROMIUM) --version

# Every page of _build/html in headless Chromium on a loopback port: fails on untypeset math,
# broken images, unrendered widgets, JavaScript errors, failed or non-loopback requests,
# tracebacks and cut-off output lines; screenshots in _build/screenshots/. The checker's own
# test (a page with each defect) runs first, so a passing check is one that can fail.
check-book: install browser
	@test -f _build/html/index.html || { echo "no _build/html: run 'make book' first" >&2; exit 1; }
	$(PY) -m pytest -q -p no:cacheprovider tests/test_check_book.py
	$(PY) tools/check_book.py _build/html --screenshots _build/screenshots

# JupyterLab on the book, as a student runs it: SCALE is unset (the Makefile's `quick` above is
# for test and book), so each chapter runs at its own default, the quick SCALE; `SCALE=full make
# lab` for the full run. JUPYTER_PREFER_ENV_PATH puts .venv's python3 kernel (the project's)
# before one the user may have installed; as root (a container) JupyterLab needs --allow-root.
# More options: make lab LAB_ARGS="--ip=0.0.0.0 --no-browser".
LAB_ARGS ?=
lab: install
	env $(if $(filter file,$(origin SCALE)),-u SCALE) JUPYTER_PREFER_ENV_PATH=1 \
	  $(VENV)/bin/jupyter lab book --MappingKernelManager.default_kernel_name=python3 \
	  $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# Chapters in JupyterLab in headless Chromium, as a student runs them (Run > Run All Cells, at
# SCALE=quick), on copies in a temporary folder: fails on an error output, MyST markup left raw
# (a {cite} role, a directive fence), an image that did not load, a widget that did not render,
# an explorer whose figure does not change with its controls; screenshots in
# _build/lab-screenshots/. The checker's own test (a notebook with each defect) runs first.
LAB_NOTEBOOKS ?= book/03_cams.ipynb book/02_gradients.ipynb
check-lab: install browser
	$(PY) -m pytest -q -p no:cacheprovider tests/test_check_lab.py
	$(PY) tools/check_lab.py $(LAB_NOTEBOOKS) --scale $(SCALE) --screenshots _build/lab-screenshots

bench: install
	$(PY) -m benchmarks

# CI: every benchmark runs end to end at toy sizes (checks that it runs, not the targets);
# written outside the repository so the committed full-run results stay as they are.
bench-quick: install
	$(PY) -m benchmarks --quick --out $${TMPDIR:-/tmp}/interpretable-bench-quick.json

clean:
	rm -rf _build .pytest_cache
