"""Guards of a pruned variant: the domain gate (out-of-domain requests go to a fallback) and the cascade
(flagged non-streaming answers are asked again of the fallback). docs/gateway.md, "Guards"."""
