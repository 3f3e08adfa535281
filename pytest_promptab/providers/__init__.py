"""Providers: where prompts are sent. See :mod:`.base` for the interface and
:mod:`.registry` for how types are looked up (built-ins and plugins)."""
