# Two commands for a new user (see README.md):
#   make run    install everything into .venv and start the app on the sample pack
#   make test   install everything into .venv and run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint browser

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

# Debian's chromium for the end-to-end browser test (Playwright drives it; no browser download) and gdal-bin,
# whose gdalinfo reads back the class maps' raster attribute tables in the tests. Installs only what is missing.
browser:
	@command -v chromium >/dev/null 2>&1 && command -v gdalinfo >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium gdal-bin >/dev/null; }

run: install
	$(VENV)/bin/streamlit run app/main.py

test: install browser
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
