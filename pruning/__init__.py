"""Offline expert pruning: observe -> score -> select -> write compact checkpoints."""
