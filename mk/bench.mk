# Benchmark (docs/performance.md): proxy on core 0, load + upstream + Redis on core 1.
# Included by the top-level Makefile. Not a test: nothing asserts timings.

BENCH_PYTHON ?= .venv/bin/python
BENCH_ARGS ?=

.PHONY: bench bench-quick

## bench: full benchmark (~10 min): direct, python-floor, streamproxy, aiohttp peer, nginx; issue 11's targets in bench/results/latest.md
bench: install
	$(BENCH_PYTHON) -m bench $(BENCH_ARGS)

## bench-quick: a few seconds per scenario, for development
bench-quick: install
	$(BENCH_PYTHON) -m bench --quick $(BENCH_ARGS)
