PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# uv installs in a fraction of pip's time; pip only bootstraps it inside the virtualenv. Bytecode
# is compiled at install, as pip does, so no command start compiles its libraries.
UV     := $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python
# Running needs the runtime only; linting, type checks and tests add the development tools.
RUNTIME := $(VENV)/.installed-runtime
DEV     := $(VENV)/.installed

.PHONY: install install-runtime lint typecheck test bench run schema clean

$(RUNTIME): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/pip install --quiet --disable-pip-version-check uv
	$(UV) -e .
	touch $(RUNTIME)

$(DEV): $(RUNTIME)
	$(UV) -e '.[dev]'
	touch $(DEV)

install-runtime: $(RUNTIME)

install: $(DEV)

lint: $(DEV)
	$(BIN)/ruff check reconciler tests bench
	$(BIN)/ruff format --check reconciler tests bench
	$(BIN)/pytest -q -p no:cacheprovider tests/test_architecture.py

typecheck: $(DEV)
	$(BIN)/mypy reconciler

# Most tests wait on daemons, sockets and timers rather than the CPU, so 4 workers pay even on
# 2 cores; TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 4

test: lint typecheck
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal

bench: $(DEV)
	$(BIN)/python -m bench

schema: $(RUNTIME)
	$(BIN)/reconciler schema --out reconciler.schema.json

run: $(RUNTIME)
	$(BIN)/reconciler validate config
	$(BIN)/reconciler db upgrade
	$(BIN)/reconciler run

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
