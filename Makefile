# The two commands: `make demo` and `make test`. Each builds .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip >/dev/null
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py
	$(BIN)/python examples/rl/train_cartpole.py --quick

lint: $(STAMP)
	$(BIN)/ruff check src tests examples
	$(BIN)/mypy src/swarm

test: $(STAMP) lint
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m slow tests

bench: $(STAMP)
	$(BIN)/swarm microbenchmark

clean:
	rm -rf $(VENV) build dist src/*.egg-info
