"""Benchmarks: `wastex bench NAME [--json]`. Each compares against a baseline measured in the same run."""
