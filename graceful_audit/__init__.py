"""graceful-audit: audit a model update before it ships."""

from __future__ import annotations

__version__ = "0.1.0"
