# One entry point for people and CI. `make test` is what the README and .ci/run call.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: test bench bench-quick reliability reliability-quick render check-generated image clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) benchmarks/run.py

bench-quick: $(VENV)/.installed
	$(PY) benchmarks/run.py --quick

# The whole reliability suite (PRTG_AI_RELIABILITY=full): counts in benchmarks/results/ and docs/benchmarks.md.
reliability: $(VENV)/.installed
	$(PY) tests/reliability/report.py

# The quick part, as `make test` runs it within the whole suite.
reliability-quick: $(VENV)/.installed
	$(PY) tests/reliability/report.py --quick

render: $(VENV)/.installed
	$(VENV)/bin/prtg-ai render

check-generated: $(VENV)/.installed
	$(VENV)/bin/prtg-ai render --check

# The agent's container image (name and tag as the DaemonSet names it), built from the wheel.
IMAGE_VERSION = $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' sensors/prtg_ai/__init__.py)
image: $(VENV)/.installed
	rm -rf dist && $(PY) -m build --wheel --outdir dist .
	docker build -f installer/assets/container/Dockerfile -t prtg-ai-agent:$(IMAGE_VERSION) dist/

clean:
	rm -rf $(VENV) build dist .pytest_cache
