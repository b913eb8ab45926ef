# raregal: `make demo` runs the whole method on the built-in synthetic survey,
# `make test` runs the test suite. Both create .venv when it is missing.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# numba compiles UMAP/HDBSCAN kernels once and keeps them here.
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba
export MPLBACKEND ?= Agg

.PHONY: venv demo test bench browser clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/raregal demo --out demo_run

# Headless Chromium for the end-to-end report/explorer tests (skipped with a reason if it cannot be installed).
browser:
	@bash scripts/ensure_browser.sh || echo "browser: could not install chromium; browser tests will be skipped"

test: $(STAMP) browser
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) benchmarks/search_scaling.py

clean:
	rm -rf $(VENV) .cache demo_run .pytest_cache
