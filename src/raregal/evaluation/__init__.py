"""Evaluation: encoder benchmarks, recovery scores, planted tables."""
