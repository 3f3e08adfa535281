"""What the session writes for people and tools: the terminal table and the results file."""
