"""The release of durable_nb (one definition: the package, the API and the server report it)."""

__version__ = "0.1.0"
