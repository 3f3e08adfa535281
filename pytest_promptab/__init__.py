"""pytest-promptab: prompt regression testing and A/B tests inside pytest.

Importing this package must stay cheap: it is loaded by every pytest run in an
environment where the plugin is installed, with or without ``--promptab``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
