# Two commands matter: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two stamps: `make run` installs the runtime dependencies only; `make test`, `lint`
# and `bench` add the dev extra (pytest, moto, ruff, mypy, ...) on top.
RUNTIME_STAMP := $(VENV)/.runtime-stamp
DEV_STAMP := $(VENV)/.dev-stamp

.PHONY: run test lint bench bench-previews setup peers bench-peers assets browser clean

setup: $(DEV_STAMP)

# GraphiQL's assets (exact versions in web/graphiql_assets/package-lock.json), from the
# npm registry into web/graphiql_assets/node_modules: served by the app itself, never
# committed, never fetched at request time. `npm ci` installs exactly the lock file;
# --ignore-scripts: no package runs code at install.
GRAPHIQL_DIR := web/graphiql_assets
GRAPHIQL_STAMP := $(GRAPHIQL_DIR)/node_modules/.installed-stamp

assets: $(GRAPHIQL_STAMP)

$(GRAPHIQL_STAMP): $(GRAPHIQL_DIR)/package.json $(GRAPHIQL_DIR)/package-lock.json
	npm ci --prefix $(GRAPHIQL_DIR) --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

# Debian's chromium, for the GraphiQL browser test (tests/test_graphiql_browser.py).
# Outside CI the test says SKIPPED without it; CI sets REQUIRE_BROWSER=1 (a failure).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends chromium fonts-liberation >/dev/null) \
	      || echo "note: could not install chromium; the GraphiQL browser test will be skipped"; \
	  else echo "note: chromium not installed; the GraphiQL browser test will be skipped"; fi; }

$(RUNTIME_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): $(RUNTIME_STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# Debian tools: pg_dump/pg_restore for PostgreSQL backups, admesh, a peer the
# analysis is compared against, and strace, which proves the analysis child writes
# no file (tests/test_analysis_child.py). Best effort: the
# comparison tests say SKIPPED when they are missing, they never fail for it.
peers:
	@command -v pg_dump >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client >/dev/null) \
	      || echo "note: could not install postgresql-client; PostgreSQL backups will fail"; \
	  else echo "note: pg_dump not installed; PostgreSQL backups will fail"; fi; }
	@command -v admesh >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq admesh >/dev/null) \
	      || echo "note: could not install admesh; peer comparisons will be skipped"; \
	  else echo "note: admesh not installed; peer comparisons will be skipped"; fi; }
	@command -v strace >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null) \
	      || echo "note: could not install strace; the no-file-write trace test will be skipped"; \
	  else echo "note: strace not installed; the no-file-write trace test will be skipped"; fi; }

# The load generator of bench/pages.py (Debian's wrk); best effort like `peers`.
bench-peers:
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null) \
	      || echo "note: could not install wrk; bench/pages.py will say SKIPPED"; \
	  else echo "note: wrk not installed; bench/pages.py will say SKIPPED"; fi; }

run: $(RUNTIME_STAMP) assets
	$(BIN)/python server.py serve

test: $(DEV_STAMP) peers assets browser
	$(BIN)/ruff check .
	$(BIN)/mypy
	PYTHON=$(BIN)/python tests/run_backends.sh

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(DEV_STAMP) peers bench-peers
	$(BIN)/python bench/api.py
	$(BIN)/python bench/pages.py
	$(BIN)/python bench/page_scale.py
	$(BIN)/python bench/scaleout.py
	$(BIN)/python bench/analysis.py
	$(BIN)/python bench/upload.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/push.py
	$(MAKE) bench-previews

# Thumbnail renderers compared with ours: VTK and pyrender on Mesa's software
# OpenGL (Debian: EGL and OSMesa), matplotlib. Only the benchmark needs them.
bench-previews: $(DEV_STAMP)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    libosmesa6 libegl1 libegl-mesa0 libgl1-mesa-dri >/dev/null) \
	    || echo "note: could not install Mesa; the OpenGL renderers will be skipped"; \
	else echo "note: not root; the OpenGL renderers need libosmesa6 and libegl-mesa0"; fi
	$(BIN)/python -m pip install --quiet -e ".[dev,bench-previews]"
	$(BIN)/python -m pip install --quiet --no-deps pyrender==0.1.45
	$(BIN)/python bench/previews.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
