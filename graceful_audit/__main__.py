"""``python -m graceful_audit`` runs the ``gaudit`` command."""

from __future__ import annotations

from .cli import main

main()
