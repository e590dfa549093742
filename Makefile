# Two set-up commands, both from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.biowm-installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/biowm demo

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks

test: $(STAMP) lint
	$(PY) -m pytest -q -n 2

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
