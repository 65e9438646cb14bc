"""File formats and contracts every job reads: checkpoints, families, manifests, statistics, report cards,
domain gates, hashes."""
