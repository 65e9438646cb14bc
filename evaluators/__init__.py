"""Utility and factual-reliability evaluation of model variants over OpenAI-compatible endpoints."""
