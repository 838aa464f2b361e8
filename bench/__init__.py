"""The streamproxy benchmark (see bench/run.py and docs/performance.md)."""
