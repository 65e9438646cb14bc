"""vLLM engine processes: how to launch one, and (in the gateway) how to supervise them."""
