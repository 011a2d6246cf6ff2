"""Pure core: build catalogue, advisories and evaluation. No I/O beyond reading its own data."""

__version__ = "0.1.0"
