# Quick start targets. `make demo` and `make test` are what README.md documents.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
# Debian packages the tests and the perturbation suite need (WordNet for word insert,
# freedict dictionaries for the offline gloss translator).
APT_PACKAGES := wordnet-base wordnet-sense-index dict-freedict-eng-ara dict-freedict-eng-ell dict-freedict-eng-hin

.PHONY: venv apt demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"

# Installs the Debian packages where apt exists and we may use it; a no-op elsewhere.
apt:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = "0" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	else \
		echo "apt-get unavailable or not root: install $(APT_PACKAGES) yourself for the full test suite"; \
	fi

demo: venv
	$(BIN)/vittle quickstart --out runs/quickstart

test: venv apt
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf runs .pytest_cache
