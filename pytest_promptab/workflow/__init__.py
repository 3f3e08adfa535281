"""The workflow file: its schema, loading with line marks, cases, variants, templates and load-time validation."""
