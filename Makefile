# ICB Cohort Explorer - the everyday commands. See README.md.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
HOST ?= 127.0.0.1
PORT ?= 8050
DATA_DIR ?= data/datasets
PYTEST_ARGS ?=
export HOST PORT DATA_DIR

.PHONY: install dev demo run serve smoke os-packages loadtest test lint format bench bench-quick bench-cellxgene clean-demo

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

## install: create .venv and install the app's requirements
install: $(VENV)/.installed

## dev: install test and lint tools too
dev: $(VENV)/.installed-dev

## demo: generate the synthetic demo bundle in DATA_DIR/demo unless it exists (~30 s)
demo: install
	$(PY) cli.py --data-dir "$(DATA_DIR)" demo --if-missing

## run: start the app at http://$(HOST):$(PORT) on the demo data
run: demo
	$(PY) app.py

## serve: run under gunicorn for a shared server (gunicorn.conf.py; README, "Deploy on a lab server")
serve: demo
	$(VENV)/bin/gunicorn -c gunicorn.conf.py app:server

LOAD_VENV ?= .venv-load
$(LOAD_VENV)/.installed: requirements-load.txt
	$(PYTHON) -m venv $(LOAD_VENV)
	$(LOAD_VENV)/bin/pip install --quiet -r requirements-load.txt
	touch $@

## loadtest: 50 simulated users for 60 s against gunicorn on 127.0.0.1 (not part of `make test`)
LOAD_USERS ?= 50
LOAD_SECONDS ?= 60
LOAD_WAIT ?= 5 15
LOAD_SPAWN_RATE ?= 1
LOAD_ARGS ?=
loadtest: demo $(LOAD_VENV)/.installed
	$(PY) loadtest/run.py --users $(LOAD_USERS) --seconds $(LOAD_SECONDS) --wait "$(LOAD_WAIT)" --spawn-rate $(LOAD_SPAWN_RATE) --locust $(LOAD_VENV)/bin/locust $(LOAD_ARGS)

## bench: benchmarks at 10k/100k/1M cells beside the naive reference and CELLxGENE (< 30 min; README, "Performance")
bench: install
	$(PY) -m bench.run

## bench-quick: the same at 10k cells (< 5 min)
bench-quick: install
	$(PY) -m bench.run --quick

## bench-cellxgene: install CELLxGENE 1.3.0 into its own venv for the side-by-side numbers (optional)
CXG_VENV ?= bench/.venv-cellxgene
$(CXG_VENV)/.installed:
	$(PYTHON) -m venv $(CXG_VENV)
	$(CXG_VENV)/bin/pip install --quiet cellxgene==1.3.0
	touch $@
bench-cellxgene: $(CXG_VENV)/.installed

## smoke: fetch every page and its callbacks from a running app (make run / make serve)
smoke:
	$(PYTHON) .ci/smoke.py http://$(HOST):$(PORT)

# Debian packages the suite needs: headless Chromium + its driver (browser tests, figure
# export) and redis-server (the Celery + Redis test). Installed when missing and running
# as root; otherwise the suite does not start and the one command to run is printed.
OS_PACKAGES := chromium:chromium chromedriver:chromium-driver redis-server:redis-server
## os-packages: install the Debian packages the tests need (as root), or say how
os-packages:
	@missing=""; \
	for pair in $(OS_PACKAGES); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian packages:$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "make test needs Debian packages that are missing:$$missing"; \
	    echo "Install them once, then run make test again:"; \
	    echo "    sudo apt-get install -y$$missing"; \
	    exit 1; \
	  fi; \
	fi

## test: the whole suite, browser tests included (installs chromium, chromium-driver, redis-server when root)
test: os-packages dev demo
	$(PY) -m pytest --headless $(PYTEST_ARGS)

## lint: ruff lint and format check
lint: dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## format: apply ruff formatting and safe fixes
format: dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean-demo:
	rm -rf "$(DATA_DIR)/demo"
