# Two commands matter: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint bench bench-previews setup peers clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Debian tools: pg_dump/pg_restore for PostgreSQL backups, and admesh, a peer the
# analysis is compared against. Best effort: the
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

run: $(STAMP)
	$(BIN)/python server.py serve

test: $(STAMP) peers
	$(BIN)/ruff check .
	@echo "=== test run 1/2: every test, database backend SQLite ==="
	TEST_DATABASE=sqlite $(BIN)/python -m pytest
	@echo "=== test run 2/2: database tests, backend PostgreSQL (127.0.0.1:5432) ==="
	TEST_DATABASE=postgres $(BIN)/python -m pytest -m db

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP) peers
	$(BIN)/python bench/api.py
	$(BIN)/python bench/analysis.py
	$(BIN)/python bench/upload.py
	$(BIN)/python bench/load.py
	$(MAKE) bench-previews

# Thumbnail renderers compared with ours: VTK and pyrender on Mesa's software
# OpenGL (Debian: EGL and OSMesa), matplotlib. Only the benchmark needs them.
bench-previews: $(STAMP)
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
