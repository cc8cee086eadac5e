# Two entry points: `make demo` and `make test`. Both create .venv and install
# everything the project needs (torch's CPU build first, so the package's range keeps it).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH := torch==2.13.0

.PHONY: demo test bench lint clean corpora

# Real-text corpora (compactnn.zoo.corpora) from Debian: installed when running as root
# and missing; otherwise the tests that need them skip.
CORPORA := wordnet-base bible-kjv bible-kjv-text jargon-text python3-doc

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev,transformer]'
	touch $(STAMP)

corpora:
	@missing=$$(for p in $(CORPORA); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -q && apt-get install -y -q $$missing) >/dev/null \
	    || echo "could not install $$missing; the tests that need them will skip"; \
	else echo "not root: corpora $$missing not installed (apt-get install -y $$missing)"; fi

test: $(STAMP) corpora
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q -n 2 -p no:cacheprovider

demo: $(STAMP)
	$(BIN)/compactnn demo --out demo_out

bench: $(STAMP)
	$(BIN)/python benchmarks/formats.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info
