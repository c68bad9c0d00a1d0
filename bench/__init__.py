"""Benchmarks (`make bench`); PostgreSQL only. See docs/benchmarks.md."""
