# make install: .venv with the project and its pins, and the C kernels built (quick when
#               nothing changed)
# make run:     install, then the word2vec pipeline (quick profile)
# make test:    install (+ PostgreSQL and Chromium for the end-to-end test), then the test suite
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
SHARED := $(abspath ../shared)
MIRROR ?= $(if $(wildcard $(SHARED)/datasets),$(SHARED)/datasets,)
export SEQFLOW_MIRROR ?= $(MIRROR)
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: install sysdeps run test lint

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt models/cells.c models/sgns.c
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[dev]'
	$(VENV)/bin/python -m models.kernels || echo "seqflow: no C kernels here (no cc?); the torch and numba paths run instead"
	touch $(STAMP)

run: install
	$(VENV)/bin/seqflow run word2vec --profile quick

sysdeps:
	bash scripts/sysdeps.sh

test: install sysdeps
	$(VENV)/bin/python -m pytest -q

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
