"""Benchmarks of meter-gateway: `python -m load_tests` (or `make bench`); see load_tests/README.md."""
