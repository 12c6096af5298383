"""The package version (one place; ``elk_celery.__version__`` re-exports it)."""

__version__ = "0.1.0"
