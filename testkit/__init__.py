"""Tools to build tiny local models and run local vLLM servers for tests and benchmarks.

Not used by the serving path: nothing in app/, pruning/, evaluators/, moeprune/ or demo/ imports it.
It sits above them (it may import any of them: tiny models use demo's tokenizer trainer, the vLLM
server helper uses app's launch command), which is why it is not part of the neutral `moeprune`.
Both tests/ and bench/ import it; bench/ never imports tests/.
"""
