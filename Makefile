SHELL := /bin/bash
# mfparse: `make demo` and `make test` each set everything up from nothing (venv, dependencies,
# build) and then do their job. VENV may point at a shared environment (make test VENV=...).
# The venv gets exactly what requirements-dev.txt locks (versions and hashes); that lock is
# generated from requirements-dev.in by `make lock` (pip-tools' pip-compile), never edited by hand.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mfparse-deps
RUN := PYTHONPATH=$(CURDIR) $(PY)
SOURCES := $(wildcard csrc/*.c csrc/*.h mfparse/*.pyx mfparse/*.pxd mfparse/*.pxi)
EXT_STAMP := .stamp-ext

LOCK := requirements-dev.txt
LOCK_IN := requirements-dev.in
LOCK_VENV ?= .venv-lock
PIP_TOOLS := pip-tools==7.7.0

.PHONY: all deps build test test-installed test-asan fuzz clang demo bench clean lock

all: build

# the lock has a hash for every file, so pip installs in hash-checking mode: exactly these
# versions, exactly these files, and nothing the lock does not name
$(STAMP): $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r $(LOCK)
	touch $(STAMP)

# lock: regenerate requirements-dev.txt from requirements-dev.in with pip-compile (in a venv of its
# own, .venv-lock). Versions already locked stay unless the .in excludes them; `make lock
# UPGRADE=1` moves every package to the newest release the .in allows (also the way out when a new
# requirement conflicts with an existing pin). Then run `make test`.
# Adding a package: one line in requirements-dev.in, `make lock`, commit both files.
lock:
	test -x $(LOCK_VENV)/bin/pip-compile || ($(PYTHON) -m venv $(LOCK_VENV) && \
		$(LOCK_VENV)/bin/python -m pip install -q $(PIP_TOOLS))
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile -q --generate-hashes --allow-unsafe \
		--strip-extras --no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade) \
		--output-file $(LOCK) $(LOCK_IN)

deps: $(STAMP)

# The extension is built in place with setuptools' build_ext (not `pip install -e .`): that leaves
# the venv's site-packages alone, so a VENV shared by several checkouts (make test VENV=...) is
# never pointed at one of them, and the Makefile's own stamps decide what is rebuilt. Packaging
# goes through pip (make test-installed: wheel built with the locked setuptools and Cython).
# --force: a changed source rebuilds every file anyway, and after `make test-asan` (which leaves its
# sanitizer build in place and removes the stamp) the normal extension must replace it, which
# setuptools' copy would skip because the sanitizer build is newer
$(EXT_STAMP): $(STAMP) $(SOURCES) setup.py
	$(PY) setup.py -q build_ext --inplace --force
	touch $(EXT_STAMP)

build: $(EXT_STAMP)

# The robustness tests flip and cut fixtures at places drawn from a seed: `make test` (and CI)
# uses a fixed one so that a run is repeatable; `make test SEED=random` (or pytest run directly)
# draws a new one each time, which is how new disagreements with the reference readers are found.
SEED ?= 20261204
TEST_ENV = MFPARSE_REQUIRE_REFS=1 MFPARSE_SEED=$(SEED)

test: build
	$(TEST_ENV) $(RUN) -m pytest -q

# test-installed: build the sdist and, from it, the wheel; install the wheel into a fresh venv with
# the locked dependencies and run the sdist's test suite against it, outside the source tree
test-installed: deps
	$(TEST_ENV) .ci/test-installed $(PY)

# ---- sanitizers and fuzzing (issue 9) --------------------------------------------------------
# test-asan: the whole pytest suite against an ASan+UBSan build of the extension (built in place;
# the next `make build` rebuilds the normal one).
SAN_LIBS = $$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)
SAN_ENV = ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 PYTHONMALLOC=malloc

test-asan: deps
	MFPARSE_SANITIZE=1 $(PY) setup.py -q build_ext --inplace --force
	rm -f $(EXT_STAMP)
	$(SAN_ENV) $(TEST_ENV) LD_PRELOAD="$(SAN_LIBS)" $(RUN) -m pytest -q -x -p no:cacheprovider

# fuzz: every libFuzzer target in fuzz/ for FUZZ_SECONDS seconds, seeded from the real writers
# and from tests/regression_inputs/<target>/ (minimized crashers, replayed by pytest too).
FUZZ_SECONDS ?= 30
CLANG ?= clang
FUZZ_TARGETS := $(patsubst fuzz/%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_SAN = address,undefined -fno-sanitize-recover=undefined
FUZZ_FLAGS = -std=c99 -g -O1 -Icsrc
FUZZ_OBJS := $(patsubst csrc/%.c,fuzz/build/obj/%.o,$(wildcard csrc/*.c))

# clang with libFuzzer and the sanitizer runtimes is a prerequisite the Makefile does not install
# (on Debian: `apt-get install clang libclang-rt-14-dev`; .ci/run does that on a fresh CI machine)
clang:
	@command -v $(CLANG) >/dev/null || { echo "make fuzz needs $(CLANG) with libFuzzer: on Debian," \
		"install it with: apt-get install clang libclang-rt-14-dev (or set CLANG=...)" >&2; exit 1; }

# the C core is compiled once (instrumented for coverage) and linked into every target
fuzz/build/obj/%.o: csrc/%.c $(wildcard csrc/*.h) | clang
	@mkdir -p fuzz/build/obj
	$(CLANG) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link,$(FUZZ_SAN) -c $< -o $@

fuzz/build/%: fuzz/%.c $(FUZZ_OBJS)
	$(CLANG) $(FUZZ_FLAGS) -fsanitize=fuzzer,$(FUZZ_SAN) $< $(FUZZ_OBJS) -o $@ -lm -lpthread

fuzz: build $(addprefix fuzz/build/,$(FUZZ_TARGETS))
	$(RUN) fuzz/make_seeds.py fuzz/build/corpus
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/build/corpus/$$t; \
		reg=$$(test -d tests/regression_inputs/$$t && echo tests/regression_inputs/$$t); \
		echo "== $$t ($(FUZZ_SECONDS) s)"; \
		fuzz/build/$$t -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
			-artifact_prefix=fuzz/build/crash-$$t- fuzz/build/corpus/$$t $$reg 2>&1 \
			| grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE|==[0-9]+==ERROR|SUMMARY)" ; \
		test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done

demo: build
	$(RUN) examples/demo.py demo_out

bench: build
	$(RUN) benchmarks/bench_listing.py

clean:
	rm -rf build dist *.egg-info mfparse/_native.c mfparse/*.so $(EXT_STAMP) demo_out .pytest_cache fuzz/build
