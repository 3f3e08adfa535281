"""Applying a winner: the apply-best decision and the byte-exact YAML rewrite of the prompts."""
