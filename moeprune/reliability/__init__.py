"""The reliability rules shared by the evaluators (offline) and the gateway (online): one implementation each."""
