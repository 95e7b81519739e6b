"""Throughput benchmarks, each runnable as `python -m bench.<name>`."""
