# The two commands for a fresh machine with Python 3.11 (see README.md):
#   make demo   builds the project's virtual environment and runs `gc demo`
#   make test   builds it with the test extras and runs the whole test suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.runtime

# `make demo DEMO_ARGS=--keep` keeps the sample store to review it afterwards.
demo: $(VENV)/.runtime
	$(BIN)/gc demo $(DEMO_ARGS)

# The report test renders in Debian's headless Chromium; install it where we can.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium for the report test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not installed: the report test will skip"; fi; }

# The Azure tests start Azurite from node_modules/, installed from package-lock.json.
node_modules/.package-lock.json: package.json package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm not installed: the Azure tests will skip"; exit 0; }; \
	npm ci --no-audit --no-fund --ignore-scripts --loglevel=error

# pytest exits 5 when it collected no test: that is a failure, not a pass.
test: $(VENV)/.test browser node_modules/.package-lock.json
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: $(VENV)/.test
	$(BIN)/ruff check gc tests benchmarks scripts examples
	$(BIN)/python -m mypy

bench: $(VENV)/.test
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
