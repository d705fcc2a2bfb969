# Two entry points, each with its own virtual environment so that a fresh machine with only
# Python 3.11 and pip can run them:   make demo   |   make test
PYTHON ?= python3
DEMO_VENV := .venv-demo
TEST_VENV := .venv
# PyTorch is pinned to the CPU build that these machines carry; installing it first keeps pip
# from resolving the package's torch range to a multi-GB CUDA download.
TORCH_PIN := torch==2.13.0
# A change to the build or to a compiled kernel reinstalls, which recompiles the kernels.
BUILD_INPUTS := pyproject.toml setup.py $(wildcard src/kldiv/_native/*.c src/kldiv/_native/*.h)

.PHONY: demo test lint docs clean

$(DEMO_VENV)/.installed: $(BUILD_INPUTS)
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/pip install --quiet --upgrade pip
	$(DEMO_VENV)/bin/pip install --quiet -e ".[cli]"
	touch $@

demo: $(DEMO_VENV)/.installed
	$(DEMO_VENV)/bin/kldiv demo

$(TEST_VENV)/.installed: $(BUILD_INPUTS)
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/pip install --quiet --upgrade pip
	$(TEST_VENV)/bin/pip install --quiet $(TORCH_PIN)
	$(TEST_VENV)/bin/pip install --quiet -e ".[dev]"
	touch $@

lint: $(TEST_VENV)/.installed
	$(TEST_VENV)/bin/ruff check .
	$(TEST_VENV)/bin/ruff format --check .
	$(TEST_VENV)/bin/mypy

docs: $(TEST_VENV)/.installed
	$(TEST_VENV)/bin/mkdocs build --strict --site-dir site

# KLDIV_REQUIRE_NATIVE=1: a compiled kernel that failed to build fails the tests instead of
# leaving only the fallback paths tested. The installed kernels run their AVX-512 copies on a
# machine that has it; check_portable_kernels.py also tests the AVX2 and baseline code.
test: lint docs
	KLDIV_REQUIRE_NATIVE=1 $(TEST_VENV)/bin/python -m pytest -n 2 --dist loadgroup
	$(TEST_VENV)/bin/python scripts/check_portable_kernels.py -n 2

clean:
	rm -rf $(DEMO_VENV) $(TEST_VENV) site build dist .pytest_cache .mypy_cache .ruff_cache
