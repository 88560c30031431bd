# Two commands on a fresh machine (Python 3.11 + PyPI):  make demo  |  make test
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Tests and benchmarks see four virtual CPU devices, so sharded code paths run.
export XLA_FLAGS ?= --xla_force_host_platform_device_count=4
export PYTHONUNBUFFERED := 1

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): requirements.txt setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m experiments all --preset smoke

# The tests compile far more than they run: tests/conftest.py adds XLA flags that make
# compiling faster (suite_xla_flags). Demos and benchmarks keep the defaults.
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile -q --durations=20

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
