"""Benchmarks of entropylab against naive and reference implementations."""
