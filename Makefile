# oxgate dev loop. `make help` lists the targets; `make test` is what CI runs.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
MATURIN ?= $(PYTHON) -m maturin
RUFF ?= $(PYTHON) -m ruff
CARGO ?= cargo
# The interpreters the end-to-end suite runs on: the oldest supported, 3.11 and the newest.
PY_VERSIONS ?= 3.9 3.11 3.13
PYTEST_ARGS ?= -q
# Seconds each fuzz target runs in `make fuzz-smoke` (5 targets) and `make fuzz`.
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_SECONDS ?= 600
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $$HOME/.pyenv)
DIST := dist
SERVE_VENV := .venv
SERVE_BIND ?= 127.0.0.1:8000
# Extra options of bench/compare.py for `make bench`, e.g. BENCH_ARGS="--duration 3 --reps 1".
BENCH_ARGS ?=

.PHONY: help build build-abi3 lint test-rust test-py test fuzz-smoke fuzz bench bench-static bench-http2 bench-smoke serve-example clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# wheel_for PY: build the release wheel for interpreter PY into dist/ (cargo makes it a
# no-op when nothing changed) and print its path. Wheels are per CPython version: the
# stable ABI (abi3) made every reference count a call into libpython, ~3% of a tiny
# request's instructions (bench/instructions.py).
define wheel_for
	tag=$$("$(1)" -c 'import sys; print("cp%d%d" % sys.version_info[:2])'); \
	$(MATURIN) build --release -q -i "$(1)" -o $(DIST) >&2; \
	ls -1t $(DIST)/oxgate-*-$$tag-$$tag-*.whl | head -n1
endef

build: ## build the wheel for $(PYTHON) into dist/
	@set -euo pipefail; $(call wheel_for,$(PYTHON))

build-abi3: ## build one abi3 wheel for every CPython >= 3.9 (portable, ~3% slower on tiny apps)
	$(MATURIN) build --release --features abi3 -o $(DIST)
	@ls -1t $(DIST)/oxgate-*-abi3-*.whl | head -n1

lint: ## cargo fmt --check, cargo clippy -D warnings (both also in fuzz/; clippy also of the abi3 build), ruff check, ruff format --check
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p oxgate-py --features abi3 -- -D warnings
	$(CARGO) clippy --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings
	$(RUFF) check .
	$(RUFF) format --check .

test-rust: ## cargo test --workspace
	$(CARGO) test --workspace

# For each of PY_VERSIONS: a fresh-enough .venv-3.X with the built wheel and the test
# requirements, then pytest. A missing interpreter is skipped with a warning; none at all
# is a failure.
test-py: ## end-to-end pytest on Python 3.9, 3.11 and 3.13, each with its own wheel
	@set -euo pipefail; \
	ran=0; failed=""; \
	for v in $(PY_VERSIONS); do \
	  py=$$(ls -1d $(PYENV_ROOT)/versions/$$v.*/bin/python3 2>/dev/null | sort -V | tail -n1 || true); \
	  if [ -z "$$py" ]; then py=$$(command -v python$$v || true); fi; \
	  if [ -z "$$py" ]; then echo "WARNING: Python $$v not found (pyenv install $$v): skipped" >&2; continue; fi; \
	  venv=.venv-$$v; \
	  echo "=== Python $$v: $$py -> $$venv"; \
	  [ -x "$$venv/bin/python" ] || "$$py" -m venv "$$venv"; \
	  "$$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip; \
	  "$$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/requirements.txt; \
	  wheel=$$($(call wheel_for,$$venv/bin/python)); \
	  echo "    $$wheel"; \
	  "$$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$$wheel"; \
	  ran=$$((ran + 1)); \
	  "$$venv/bin/python" -m pytest $(PYTEST_ARGS) tests || failed="$$failed $$v"; \
	done; \
	if [ "$$ran" -eq 0 ]; then echo "no Python of $(PY_VERSIONS) found: nothing was tested" >&2; exit 1; fi; \
	if [ -n "$$failed" ]; then echo "end-to-end tests failed on Python$$failed" >&2; exit 1; fi

# fuzz/ is its own cargo workspace; fuzz/run installs cargo-fuzz if missing and needs
# only the stable toolchain. See docs/fuzzing.md for the long run.
fuzz-smoke: ## build the cargo-fuzz targets and run each for FUZZ_SMOKE_SECONDS (10)
	bash fuzz/run $(FUZZ_SMOKE_SECONDS)

fuzz: ## run each fuzz target for FUZZ_SECONDS (600), at nice 19
	nice -n 19 bash fuzz/run $(FUZZ_SECONDS)

# bench/install.sh fills .venv-bench (newest pyenv CPython) with the wheel from dist/, Django
# and the peers, and apt-installs wrk, nginx and libev-dev if missing; a second run is fast.
# The full run takes about 50 minutes with the defaults (10 s x 3 reps, see docs/benchmarks.md).
bench: ## oxgate vs its peers (wrk): writes bench/results/latest.json, docs/benchmarks.md/.png
	MATURIN="$(MATURIN)" bash bench/install.sh full
	.venv-bench/bin/python bench/compare.py $(BENCH_ARGS)

bench-static: ## static files: --static-map vs whitenoise in oxgate vs nginx (bench/static_files.py)
	MATURIN="$(MATURIN)" bash bench/install.sh full
	.venv-bench/bin/python bench/static_files.py

bench-http2: ## HTTP/2 hello over h2c: oxgate vs granian, with h2load (bench/http2.py)
	MATURIN="$(MATURIN)" bash bench/install.sh full
	.venv-bench/bin/python bench/http2.py

# Proves bench/compare.py works: oxgate and gunicorn on every scenario for 1 s, and the
# in-process ceiling, then the report rewritten from the JSON alone; all into a temp dir
# (docs/ untouched). No compiled peers, no nginx. Needs a wheel in dist/ (`make build`).
bench-smoke: ## a seconds-long run of bench/compare.py into a temp dir (CI)
	MATURIN="$(MATURIN)" bash bench/install.sh smoke
	@set -euo pipefail; out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; \
	.venv-bench/bin/python bench/compare.py --duration 1 --reps 2 --warmup 0 --strict \
	  --interleave --only-servers oxgate,gunicorn-sync --out "$$out" --docs "$$out"; \
	.venv-bench/bin/python bench/compare.py --report-only --strict --out "$$out" --docs "$$out"; \
	test -s "$$out/benchmarks.md" && test -s "$$out/benchmarks.png"

test: lint test-rust fuzz-smoke test-py bench-smoke ## everything CI runs: lint, Rust tests, fuzz smoke, end-to-end tests (each Python with its wheel), bench smoke

serve-example: ## build, install into .venv, migrate examples/django_site and serve it on :8000
	@set -euo pipefail; \
	[ -x $(SERVE_VENV)/bin/python ] || $(PYTHON) -m venv $(SERVE_VENV); \
	$(SERVE_VENV)/bin/python -m pip install -q --disable-pip-version-check \
	  'django>=4.2,<5; python_version < "3.10"' 'django>=5,<6; python_version >= "3.10"'; \
	$(SERVE_VENV)/bin/python -m pip install -q --disable-pip-version-check --force-reinstall --no-deps \
	  "$$($(call wheel_for,$(SERVE_VENV)/bin/python))"; \
	$(SERVE_VENV)/bin/python examples/django_site/manage.py migrate --noinput; \
	$(SERVE_VENV)/bin/python examples/django_site/manage.py collectstatic --noinput -v 0; \
	echo "Serving examples/django_site on http://$(SERVE_BIND)/ (Ctrl-C stops)"; \
	exec $(SERVE_VENV)/bin/oxgate --chdir examples/django_site mysite.wsgi \
	  --bind $(SERVE_BIND) --access-logfile - --django-static

clean: ## remove build output and the test virtualenvs
	rm -rf $(DIST) target .venv .venv-3.* .venv-bench .pytest_cache .ruff_cache bench/results
	rm -rf fuzz/target fuzz/seeds fuzz/logs
