"""`moeprune` sub-commands owned by the pruning package (each: configure(parser), run(args) -> int)."""
