"""Providers: where prompts are sent; the interface, the registry, the built-in types, retries and record/replay."""
