# Rewards back office: build / run / test. Everything runs from the repo-local .venv.
#   make run    install, migrate, load demo data, serve on 127.0.0.1:$(PORT)
#   make test   full pytest suite against a throwaway PostgreSQL 15 (scripts/pg_test_cluster.sh)

PYTHON ?= python3
PORT ?= 8000
PYTEST_ARGS ?=
# make test (with no PYTEST_ARGS) runs the suite in this many pytest-xdist processes (one test
# database each, whole modules per process); PYTEST_WORKERS=1 for one process. With
# PYTEST_ARGS it runs one process with those arguments.
PYTEST_WORKERS ?= 2
RUNSERVER_ARGS ?= --noreload

VENV := .venv
VENV_PY := $(VENV)/bin/python
# Re-install only when pyproject.toml (or the helper reading it) changes.
DEPS_STAMP := $(VENV)/.deps-installed

.DEFAULT_GOAL := help
.PHONY: help venv install run test test-sqlite pg-start pg-stop clean distclean

help:
	@echo "make run          install deps, migrate, load demo data, runserver on 127.0.0.1:$(PORT)"
	@echo "make test         pytest against a throwaway PostgreSQL 15 (PYTEST_ARGS='...' to pass args)"
	@echo "make test-sqlite  pytest against SQLite (quick local loop)"
	@echo "make install      create .venv and install dependencies (incl. test extras)"
	@echo "make clean        remove .venv and caches; make distclean also removes var/ (local DB)"

$(VENV_PY):
	@rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "error: '$(PYTHON) -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }

$(DEPS_STAMP): pyproject.toml scripts/pyproject_deps.py | $(VENV_PY)
	$(VENV_PY) scripts/pyproject_deps.py test > $(VENV)/requirements.txt
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check -r $(VENV)/requirements.txt
	@touch $@

venv install: $(DEPS_STAMP)

run: $(DEPS_STAMP)
	mkdir -p var
	$(VENV_PY) manage.py migrate --noinput
	$(VENV_PY) manage.py load_demo
	@echo ""
	@echo "  Rewards back office: http://127.0.0.1:$(PORT)/"
	@echo "  Staff admin:         http://127.0.0.1:$(PORT)/admin/   user admin / admin-demo"
	@echo "  API till (HTTP Basic auth): user demo_till / demo-pass"
	@echo ""
	exec $(VENV_PY) manage.py runserver $(RUNSERVER_ARGS) 127.0.0.1:$(PORT)

test: $(DEPS_STAMP)
	@# Browser tests (tests/browser) drive Debian's chromium; installed once, when missing.
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium) || echo "warning: chromium not installed: browser tests will be skipped" >&2
	@# tests/test_pgbouncer.py runs the app behind Debian's PgBouncer (installed once, when missing;
	@# the package's own service is not started: policy-rc.d or no init in containers).
	test -x /usr/sbin/pgbouncer || command -v pgbouncer >/dev/null || (apt-get update && apt-get install -y pgbouncer) || echo "warning: pgbouncer not installed: its tests will be skipped" >&2
ifeq ($(filter-out 0 1,$(PYTEST_WORKERS))$(PYTEST_ARGS),$(PYTEST_WORKERS))
	@# The whole suite in PYTEST_WORKERS processes, then the schemathesis fuzz module in one:
	@# its cases share one node id per test, which pytest-xdist runs only once.
	scripts/pg_test_cluster.sh with sh -c '$(VENV_PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --ignore=tests/test_fuzz_api.py && $(VENV_PY) -m pytest tests/test_fuzz_api.py'
else
	scripts/pg_test_cluster.sh with $(VENV_PY) -m pytest $(PYTEST_ARGS)
endif

test-sqlite: $(DEPS_STAMP)
	mkdir -p var
	DATABASE_URL="sqlite:///$(CURDIR)/var/test.sqlite3" $(VENV_PY) -m pytest $(PYTEST_ARGS)

# Long-lived cluster for repeated runs: eval "$$(make -s pg-start)"; ...; make pg-stop
pg-start:
	@scripts/pg_test_cluster.sh start

pg-stop:
	@scripts/pg_test_cluster.sh stop

clean:
	-scripts/pg_test_cluster.sh stop
	rm -rf $(VENV) .pytest_cache *.egg-info staticfiles
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf var
