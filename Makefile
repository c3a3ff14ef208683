# Everything a fresh machine of this kind needs goes through these targets:
# Debian packages, the Python environment, and the Go-built tools (cached in
# ${BERTH_CACHE:-~/.cache/berth}, never in the repository).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest -p no:cacheprovider

.PHONY: demo demo-down test deps system-deps python-deps control-plane-tools lint test-unit test-integration test-e2e clean

## test: install what is missing, then run mypy, unit, integration and end-to-end tests
test: deps lint test-unit test-integration test-e2e

deps: system-deps python-deps control-plane-tools

system-deps:
	e2e/install-deps

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $@

python-deps: $(VENV)/.installed

control-plane-tools:
	e2e/build-tools etcd kube-apiserver kube-controller-manager kubectl >/dev/null

lint: python-deps
	$(VENV)/bin/mypy

test-unit: python-deps
	$(PYTEST) tests/unit -q

test-integration: python-deps control-plane-tools
	$(PYTEST) tests/integration -q -p no:logging

## test-e2e: bring up the local cluster, install berth with Helm, run e2e/tests
test-e2e: python-deps
	e2e/run-tests

clean:
	rm -rf $(VENV) build *.egg-info operator/*.egg-info

## demo: bring up the local cluster, install berth with Helm and run the main job end to end
demo:
	e2e/demo up

demo-down:
	e2e/demo down
