"""Throughput benchmarks, each runnable as `python -m bench.<name>`."""

import json


def write_json(path: str | None, results: dict) -> dict:
    """`results` written to `path` (a bench's `--json`), if one is given; returns them."""
    if path:
        with open(path, "w") as f:
            json.dump(results, f, indent=2)
    return results
