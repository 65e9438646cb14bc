"""What every package of the project may import: the error type, the CLI dispatcher, the version.

It sits below `pruning`, `evaluators` and `app` (app -> evaluators -> pruning ->
moeprune) and imports none of them; the CLI finds sub-commands by module name.
"""
