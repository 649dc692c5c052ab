# The two commands: `make demo` and `make test`. Each builds .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint bench clean sysdeps

# Programs the tests drive for real (Redis for the persistent control store, Chromium for the dashboard's
# browser test): Debian packages, installed when missing and we may (root).
SYSDEPS := redis-server:redis-server chromium:chromium
sysdeps:
	@missing=""; for pair in $(SYSDEPS); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing$$missing: install them (e.g. apt-get install$$missing) or the tests that need them fail"; fi; \
	fi

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

test: $(STAMP) sysdeps lint
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

test-slow: $(STAMP) sysdeps
	$(BIN)/python -m pytest -q -p no:cacheprovider -m slow tests

bench: $(STAMP)
	$(BIN)/swarm microbenchmark

clean:
	rm -rf $(VENV) build dist src/*.egg-info
