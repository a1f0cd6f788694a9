# openecr: `make serve` runs the registry, `make test` runs every test (installing what they need),
# `make test-fast` the tests that start no process (in-process servers; no lint, no installs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
DATA_DIR ?= ./.openecr

.PHONY: serve test test-fast lint typecheck install install-runtime clean bench bench-smoke bench-profile \
	bench-scale bench-instructions cluster cluster-down cluster-stop

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-runtime

# what serving needs, without the test extra (pytest, mypy, ruff, stubs, ...)
$(VENV)/.installed-runtime: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

install: $(VENV)/.installed

install-runtime: $(VENV)/.installed-runtime

# `make serve SERVE_ARGS="--access-log json --log-level debug"` passes options to openecr serve
serve: install-runtime
	@echo "openecr is installed in $(abspath $(BIN)): put it on PATH for the README's examples with"
	@echo "    export PATH=\"$(abspath $(BIN)):\$$PATH\"    (or: . $(VENV)/bin/activate)"
	$(BIN)/openecr serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR) $(SERVE_ARGS)

lint: install
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy
	$(BIN)/mypy bench
	$(BIN)/mypy scripts/localcluster.py

test: install
	./scripts/install-test-deps skopeo podman docker.io busybox-static wrk hey docker-registry apache2-utils postgresql-15 curl openssl haproxy chromium chromium-driver amazon-ecr-credential-helper iproute2 util-linux
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/mypy bench
	$(BIN)/mypy scripts/localcluster.py
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Tests marked neither slow (they start processes) nor e2e (container clients): under a minute.
test-fast: install
	$(BIN)/python -m pytest -m "not slow and not e2e" $(PYTEST_ARGS)

# `make bench`: openecr side by side with moto, ministack and distribution, on both cores, without
# pull-time recording, and scaled out
# (3 replicas on PostgreSQL + SeaweedFS behind haproxy) against one openecr (README, Performance).
# Installs its tools (bench/setup.sh), takes about 45 minutes, writes bench-results/.
bench: install
	./bench/setup.sh
	BENCH_COMMAND="make bench" $(BIN)/python -m bench.run $(BENCH_ARGS)

# The smallest run, openecr alone (what tests/test_bench_smoke.py runs, with distribution).
bench-smoke: install
	./scripts/install-test-deps wrk hey skopeo util-linux
	$(BIN)/python -m bench.run --quick --no-chart $(BENCH_ARGS)

# Where openecr spends its time under load: py-spy profiles of BatchGetImage and manifest GET.
bench-profile: install
	./bench/setup.sh
	$(BIN)/python -m bench.profile $(BENCH_ARGS)

# `make cluster`: PostgreSQL, SeaweedFS (S3), 3 openecr replicas and haproxy on loopback ports
# (docs/scale-out.md), in the foreground; it prints how to use them. Ctrl-C, or `make cluster-down`
# in another shell, stops exactly the processes it started (by PID) and throws the data away.
# `make cluster CLUSTER_ARGS="--replicas 5 --port 6000"`.
cluster: install
	./scripts/install-test-deps postgresql-15 haproxy
	$(BIN)/python scripts/localcluster.py up $(CLUSTER_ARGS)

cluster-down:
	$(BIN)/python scripts/localcluster.py down $(CLUSTER_ARGS)

cluster-stop: cluster-down

# Growth (not in `make bench`): 1,000,000 images over 1,000 repositories, bulk-inserted into
# openecr's metadata store, against a 100-image registry: BatchGetImage and manifest GET p50,
# load time, database size per image (bench-results/growth.md). `BENCH_ARGS="--images 100000
# --repositories 100"` runs a smaller one.
bench-scale: install
	./scripts/install-test-deps wrk util-linux
	$(BIN)/python -m bench.growth $(BENCH_ARGS)

# CPU instructions per request, counted by valgrind in one process (deterministic, where timings on
# a shared machine are not): BatchGetImage, /v2 manifest GET/HEAD, PutImage. `BENCH_ARGS="--baseline-src
# ../base/src --no-pull-times"` adds another build's source tree and this build without pull times.
bench-instructions: install
	./scripts/install-test-deps valgrind
	$(BIN)/python -m bench.instructions $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
