"""synctui: a terminal dashboard for copy trading."""

__version__ = "0.1.0"
