"""Offline expert pruning: observe -> score -> select -> write compact checkpoints."""

__version__ = "0.1.0"
