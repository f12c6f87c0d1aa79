# Quick start targets. `make demo` and `make test` are what README.md documents.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
# Debian packages the tests and the perturbation suite need (WordNet for word insert,
# freedict dictionaries for the offline gloss translator, Chromium for the browser tests).
APT_PACKAGES := wordnet-base wordnet-sense-index dict-freedict-eng-ara dict-freedict-eng-ell dict-freedict-eng-hin chromium

.PHONY: venv apt apt-figures demo quickstart test lint bench lab lab-report lab-quick lab-staged lab-staged-report lab-staged-quick lab-staged-export clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e ".[all,test]"

# Installs the Debian packages where apt exists and we may use it; a no-op elsewhere.
apt:
	@if dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		true; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = "0" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	else \
		echo "apt-get unavailable or not root: install $(APT_PACKAGES) yourself for the full test suite"; \
	fi

# The app on the embedded default models: http://127.0.0.1:7860 (Ctrl-C to stop).
demo: venv apt
	$(BIN)/python app.py

# Train a tiny Vittle model from scratch (200 steps, ~30 s) and answer a question.
quickstart: venv
	$(BIN)/vittle quickstart --out runs/quickstart

test: venv apt
	$(BIN)/python -m pytest -q

# ruff and mypy (pinned in the test extra) with the settings in pyproject.toml: style everywhere, types strictly
# in the core package vittle/. CI runs both before the tests.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: venv
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/app_latency.py

# Chromium renders the lab's PNG figures (HTML figures need nothing).
apt-figures:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = "0" ]; then \
		command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); \
	else \
		echo "apt-get unavailable or not root: install chromium for PNG figures (HTML figures are written anyway)"; \
	fi

# The robustness lab: per seed a base, then the baseline, Vittle (F), Vittle (L) and the noise-only
# control fine-tuned from it (5 seeds); a KL-weight sweep, alpha 1, the unscaled regime and a positive
# control on 3 seeds; refreshes the default models in assets/models. Two worker processes;
# resumable: finished runs are skipped.
lab: venv apt apt-figures
	$(BIN)/vittle lab --out runs/lab --archive docs/robustness-lab/runs --assets assets/models --workers 2

# Recompute lab.json, lab.md and the figures from the archived per-run results alone (seconds; no training).
lab-report: venv apt-figures
	$(BIN)/vittle lab --report-only --out runs/lab --archive docs/robustness-lab/runs

# The same pipeline in under 10 minutes (one seed, short training on 300 images, a small slice).
lab-quick: venv apt apt-figures
	$(BIN)/vittle lab --quick --out runs/lab-quick --workers 2

# The staged study (docs/robustness-lab/staged.md): per base, stage 0 (text: WordNet glosses) and
# stage 1 (captions); per (base, seed) unit every stage-2 arm learns easy-vqa from the stage-1 model.
# Two worker processes; resumable; every finished run archived at once in docs/robustness-lab/staged/runs.
lab-staged: venv apt
	$(BIN)/python -m vittle.analysis.lab.staged --out runs/staged --archive docs/robustness-lab/staged/runs --workers 2

# staged.json and staged.md from the archived records alone (no training); staged.json also into
# assets/, where the app's Robustness tab reads the study's numbers.
lab-staged-report: venv
	$(BIN)/python -m vittle.analysis.lab.staged --report-only --out runs/staged --archive docs/robustness-lab/staged/runs
	cp runs/staged/staged.json assets/staged.json

# The app's models from the staged study's declared unit (b0, s0), if its Vittle (F) passes gate (b).
lab-staged-export: venv
	$(BIN)/python -m vittle.analysis.lab.staged_export --out runs/staged --archive docs/robustness-lab/staged/runs --assets assets/models --base 0 --seed 0

# One base, one unit, short stages: the staged pipeline in under 10 minutes.
lab-staged-quick: venv apt
	$(BIN)/python -m vittle.analysis.lab.staged --quick --out runs/staged-quick --workers 2

clean:
	rm -rf runs .pytest_cache
