"""From run records to verdicts: statistics, gates and the session summary as plain data."""
