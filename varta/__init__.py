"""Varta: edge nodes and a central dashboard for a city's Safe Community programme."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("varta")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+src"
