"""Metric functions: plain, pure, each tested against hand-computed values."""
