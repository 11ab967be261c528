# zhuanlan — every target creates the virtualenv and installs the project first if needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CORPUS ?= ../shared/corpus

.PHONY: install browser demo test lint typecheck check eval bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Headless Chromium for the browser tests (Debian's package; needs root or sudo).
browser:
	@if [ -x /usr/bin/chromium ] && [ -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk; \
	elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk; \
	else echo "the browser tests need Debian's chromium: apt-get install chromium fonts-noto-cjk" >&2; exit 1; fi

## The main job: sample sources, embedded SQLite, one full cycle, then web app + scheduler until Ctrl-C.
demo: $(STAMP)
	$(BIN)/zhuanlan demo

## The test suite (SQLite; set ZHUANLAN_TEST_DATABASE_URL to run it on PostgreSQL too).
test: $(STAMP) browser
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

## Extraction quality on the real pages of ../shared/corpus (read-only; never copied here).
eval: $(STAMP)
	$(BIN)/zhuanlan eval --strict --corpus $(CORPUS)

## Benchmarks: results go to docs/benchmarks.md.
bench: $(STAMP)
	@command -v nginx >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light) || \
		echo "nginx-light not installed: the ingest benchmark falls back to Python's server"
	@# The project's bytecode, as an installed package has it (pip compiles at install): where
	@# PYTHONDONTWRITEBYTECODE is set, an editable checkout would compile every module in every
	@# crawl process and pipeline worker the benchmark starts (about 0.25 s of CPU each).
	$(BIN)/python -m compileall -q scheduler.py zhuanlan_config.py zhuanlan_cli.py crawler pipeline feeds archive bench
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache *.egg-info
