# Two entry points: `make demo` and `make test`. Both create .venv and install
# everything the project needs (torch's CPU build first, so the package's range keeps it).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH := torch==2.13.0

NATIVE := setup.py $(wildcard src/compactnn/kernels/csrc/*)
ASAN := build/asan

# Real-text corpora (compactnn.zoo.corpora) from Debian: installed when running as root
# and missing; otherwise the tests that need them skip.
CORPORA := wordnet-base bible-kjv bible-kjv-text jargon-text python3-doc

.PHONY: demo test bench lint sanitize clean corpora neon

$(STAMP): pyproject.toml Makefile $(NATIVE)
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

# The native kernels built with AddressSanitizer and UBSan, then the kernel tests on them.
sanitize: $(STAMP)
	rm -rf $(ASAN) && mkdir -p $(ASAN) && cp -r src setup.py pyproject.toml $(ASAN)/
	find $(ASAN) -name '*.so' -delete
	cd $(ASAN) && CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -O1" \
		LDFLAGS="-fsanitize=address,undefined" $(CURDIR)/$(BIN)/python setup.py -q build_ext --inplace
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
		ASAN_OPTIONS=detect_leaks=0 PYTHONPATH=$(ASAN)/src COMPACTNN_REQUIRE_BUILD=$(ASAN) \
		$(BIN)/python -m pytest -q -p no:cacheprovider tests/kernels

# The NEON index-map kernels cross-built for aarch64 and run under qemu-aarch64 against the
# portable C results (tests/kernels/test_neon_qemu.py); installs the Debian cross tools as root.
neon: $(STAMP)
	@command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && apt-get update -q >/dev/null && \
	    apt-get install -y -q gcc-aarch64-linux-gnu qemu-user >/dev/null; } || \
	  echo "could not install gcc-aarch64-linux-gnu qemu-user; the NEON test will skip"
	$(BIN)/python -m pytest -q -p no:cacheprovider -rs tests/kernels/test_neon_qemu.py

bench: $(STAMP)
	$(BIN)/python benchmarks/formats.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info src/compactnn/kernels/*.so
