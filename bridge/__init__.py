"""Visio Bridge: Matrix rooms as video meetings, with a built-in SFU."""

__version__ = "0.1.0"
