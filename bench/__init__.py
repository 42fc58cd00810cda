"""Benchmarks: each prints its figures and the machine it ran on (see docs/performance.md)."""
