"""Benchmarks of the call path against its baselines, in one run: `python -m bench`."""
