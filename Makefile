# streamproxy — the two commands a newcomer needs:
#   make demo   run the proxy in front of a built-in echo app (http://localhost:15000)
#   make test   install everything the tests need, then run the whole test suite
# Everything else: `make help`.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/.tools/bin:$(PATH)

.DEFAULT_GOAL := help
.PHONY: help install demo run test test-fast soak check lint typecheck format ci

## help: list the targets
help:
	@grep -hE '^## ' $(MAKEFILE_LIST) | sed 's/^## /  /'

## install: create .venv with streamproxy and the dev tools (idempotent)
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	scripts/install.sh
	@touch $@

## demo: run streamproxy in front of its built-in echo app (Ctrl-C stops)
demo: install
	$(BIN)/streamproxy demo

## run: run the proxy (pass flags with ARGS="--upstream http://127.0.0.1:8080 ...")
run: install
	$(BIN)/streamproxy run $(ARGS)

## test: install what the tests need (venv, helm, kubectl) and run the whole suite
test: install
	scripts/test.sh

## soak: the ~60 s counter soak (Redis restarted under traffic)
soak: install
	$(BIN)/python -m pytest -m soak -q

## check: ruff (lint + format) and mypy --strict
check: lint typecheck

lint: install
	$(BIN)/ruff check sidecar tests bench
	$(BIN)/ruff format --check sidecar tests bench

typecheck: install
	$(BIN)/mypy

## format: apply ruff's fixes and formatting
format: install
	$(BIN)/ruff check --fix sidecar tests bench
	$(BIN)/ruff format sidecar tests bench

## ci: what .ci/run runs
ci:
	bash .ci/run

include $(wildcard mk/*.mk)
