"""Benchmarks of `interpretable` against one forward pass and against the peer libraries."""
