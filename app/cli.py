"""Transitional: the dispatcher now lives in `moeprune.cli` (references are moved there)."""

from moeprune.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
