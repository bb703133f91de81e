"""Benchmarks, one command each (docs/performance.md). Not part of the app."""
