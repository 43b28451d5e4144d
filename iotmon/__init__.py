"""iotmon: a real-time monitor for equipment temperature streams."""

from iotmon._version import __version__

__all__ = ["__version__"]
