"""``python -m graceful_audit`` runs the ``gaudit`` command."""

from __future__ import annotations

import sys


def run() -> None:
    """Entry point: signals are handled before the command line's imports begin, so Ctrl-C
    at any moment says "gaudit: interrupted" and exits 130 (SIGTERM: 143)."""
    from . import interrupt

    try:
        interrupt.install()
        from .cli import main
    except KeyboardInterrupt:
        sys.stderr.write(interrupt.message() + "\n")
        sys.exit(interrupt.exit_code())
    main()


if __name__ == "__main__":
    run()
