PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install lint typecheck test bench run schema clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check reconciler tests bench migrations
	$(BIN)/ruff format --check reconciler tests bench migrations

typecheck: $(STAMP)
	$(BIN)/mypy reconciler

test: lint typecheck
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench

schema: $(STAMP)
	$(BIN)/reconciler schema --out reconciler.schema.json

run: $(STAMP)
	$(BIN)/reconciler validate config
	$(BIN)/reconciler db upgrade
	$(BIN)/reconciler run

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
