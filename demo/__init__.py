"""The embedded demo: a self-trained biomedical/general MoE, pruned, evaluated and served (`moeprune demo`)."""
