"""Check types that judge a run's outputs: the registry, text, JSON and custom checks, and the LLM judge."""
