# Music Map: `make demo` runs the whole pipeline on generated data, `make test` runs the tests.
# Both create (or reuse) .venv in the project root and install what they need.
#
# torch: a CPU build by default. For CUDA, e.g.:
#   make venv TORCH_SPEC="torch==2.13.0" TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
DEMO_ROOT ?= demo-data
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))
export SPARK_LOCAL_IP ?= 127.0.0.1

.PHONY: venv demo test test-fast fuzz bench dist clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel
	$(PY) -m pip install -q "$(TORCH_SPEC)" $(TORCH_INDEX)
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: venv
	$(PY) -m musicmap.demo --root $(DEMO_ROOT)

# Two test processes (pytest-xdist), each test file whole in one of them: much of a test's time
# is a JVM, torchrun or a subprocess starting, which the other process overlaps. Files run in
# the order tests/conftest.py gives (the longest first), not xdist's order by test count.
TEST_PROCS ?= 2
test: venv
	$(PY) -m pytest -q -n $(TEST_PROCS) --dist loadfile --no-loadscope-reorder

test-fast: venv
	$(PY) -m pytest -q -n $(TEST_PROCS) --dist loadfile --no-loadscope-reorder -m "not slow"

fuzz: venv   # the input fuzz test with 5,000 examples instead of make test's 150 (about 2 minutes on 2 cores)
	HYPOTHESIS_PROFILE=long $(PY) -m pytest -q tests/test_fuzz_inputs.py -k fuzzed

bench: venv
	$(PY) -m bench.run_all

dist: venv
	$(PY) -m musicmap.dist

clean:
	rm -rf $(DEMO_ROOT) dist build *.egg-info
