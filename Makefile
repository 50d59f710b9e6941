# runnerd — the two commands a newcomer needs:
#   make demo   (the whole system on one machine: control plane, GitHub simulator, controller, workload)
#   make test   (sets up everything that is missing, then lint, types, layer contracts and all tests)
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test setup venv binaries tools npm chromium containers images lint typecheck contracts unit pytest lock demo clean

test: setup lint pytest

setup: venv binaries tools npm chromium containers images

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip==25.3
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Real Kubernetes binaries built from Go modules into ~/.cache/runnerd (cold: ~30 min; warm: instant).
binaries:
	@hack/build-binaries.sh >/dev/null

# promtool, actionlint and kubeconform for the operations-kit tests, built from Go modules into
# ~/.cache/runnerd/tools (cold: ~3 min; warm: instant). After binaries: they share the Go caches.
tools: binaries
	@hack/build-tools.sh >/dev/null

npm:
	@hack/install-npm.sh >/dev/null

# Debian's chromium for the dashboard test (headless), installed with apt-get when missing.
chromium:
	@hack/install-chromium.sh

# Debian's container tools (buildah, mmdebstrap, containerd, runc, ...) for the image and real-node
# tests, installed with apt-get when missing; RUNNERD_SKIP_CONTAINERS=1 skips them (those tests skip).
containers:
	@hack/install-containers.sh

# runnerd's images built here, reproducibly, into ~/.cache/runnerd/images (cold: ~3 min; warm: ~1 s);
# prints the manifest (images/README.md). Skipped with RUNNERD_SKIP_CONTAINERS=1.
images: venv containers
	@if [ "$${RUNNERD_SKIP_CONTAINERS:-0}" = 1 ]; then echo "make: images skipped (RUNNERD_SKIP_CONTAINERS=1)"; else hack/build-images.sh; fi

lint: venv
	$(VENV)/bin/ruff check src tests bench hack
	$(VENV)/bin/ruff format --check src tests bench hack
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy hack
	$(VENV)/bin/lint-imports

pytest: venv
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lock:
	$(PY) -m pip freeze --exclude-editable | { echo "# Exact versions of every Python package (direct and transitive) the project installs."; echo "# Regenerate with: make lock"; cat; } > constraints.txt

# The whole system on one machine (docs/demo.md); Ctrl-C stops it. TRACE=path.jsonl replays a trace file,
# DEMO_ARGS passes more flags (e.g. DEMO_ARGS="--workload smoke").
demo: venv binaries
	@$(VENV)/bin/runnerd-dev demo $(if $(TRACE),--trace "$(TRACE)") $(DEMO_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
