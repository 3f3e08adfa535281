"""pytest-promptab: prompt regression testing and A/B tests inside pytest.

Importing this package must stay cheap: it is loaded by every pytest run in an
environment where the plugin is installed, with or without ``--promptab``.

PYTEST_DONT_REWRITE: the plugin's own asserts need no rewriting, and the
marker keeps pytest from warning when an in-process run (pytester) registers
the already imported plugin again.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
