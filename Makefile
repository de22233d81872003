# The two set-up commands of the README. Both create .venv on first use.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   := torch==2.14.1 torchvision==0.29.1
OUT     ?= demo_out

.PHONY: demo test docs install browser bench train-demo clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[serve,ray,test,docs]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/videoxai demo --out $(OUT)

# Browser tests (viewer, ST-ABN editor) drive Debian's headless Chromium; install it when we can.
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium and chromium-driver (Debian packages) for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "chromium not installed and no root apt-get: browser tests will be skipped"; fi; }

test: $(STAMP) browser
	$(BIN)/ruff check videoxai tests benchmarks scripts
	# two processes (pytest-xdist), a test file each at a time: the suite alone kept 2 cores
	# 60 % busy (Python, file I/O, subprocesses, servers waiting); files keep their module fixtures
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests

# The documentation site (MkDocs + mkdocstrings, API pages from the docstrings) into site/.
# `make test` builds it too, in strict mode, and runs the tutorial's code (tests/test_docs.py).
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(BIN)/python benchmarks/staa_overhead.py

train-demo: $(STAMP)
	$(BIN)/python scripts/train_demo.py

clean:
	rm -rf $(VENV) $(OUT) site .pytest_cache
