"""Operator CLI: ``celery -A proj elk status|partitions|gaps|retry-failed|breaker|watch|reset|
pause|resume|cancel|set``.

``elk`` is a click group registered through Celery's ``celery.commands``
entry point (``elk = elk_celery.cli:elk``), so Celery loads the app and
hands it over the way it does for Flower. ``python -m elk_celery.cli -A proj
status`` runs the same commands without the entry point.
"""

from __future__ import annotations

from . import control as _control  # noqa: F401 - registers pause/resume/cancel/set
from .commands import elk


def main(argv: list[str] | None = None) -> None:
    """Standalone entry: ``python -m elk_celery.cli [-A proj] COMMAND ...``."""
    elk.main(args=argv, prog_name="python -m elk_celery.cli", auto_envvar_prefix="ELK_CLI")


__all__ = ["elk", "main"]
