"""The gateway: serves pruned MoE variants through vLLM behind one OpenAI-compatible API."""
