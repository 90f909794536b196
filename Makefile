# mfparse: `make demo` and `make test` each set everything up from nothing (venv, dependencies,
# build) and then do their job. VENV may point at a shared environment (make test VENV=...).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mfparse-deps
RUN := PYTHONPATH=$(CURDIR) $(PY)
SOURCES := $(wildcard csrc/*.c csrc/*.h mfparse/*.pyx mfparse/*.pxi)
EXT_STAMP := .stamp-ext

.PHONY: all deps build test demo bench clean

all: build

$(STAMP): requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

deps: $(STAMP)

$(EXT_STAMP): $(STAMP) $(SOURCES) setup.py
	$(PY) setup.py -q build_ext --inplace
	touch $(EXT_STAMP)

build: $(EXT_STAMP)

test: build
	$(RUN) -m pytest -q

demo: build
	$(RUN) examples/demo.py demo_out

bench: build
	$(RUN) benchmarks/bench_listing.py

clean:
	rm -rf build dist *.egg-info mfparse/_native.c mfparse/*.so $(EXT_STAMP) demo_out .pytest_cache
