"""Transitional: the error type now lives in `moeprune.errors` (imports are moved there)."""

from moeprune.errors import UserError, validation_problems  # noqa: F401
