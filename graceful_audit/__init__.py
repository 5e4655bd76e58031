"""graceful-audit: audit a model update before it ships.

Use from Python::

    from graceful_audit import audit_flips
    result = audit_flips("old.parquet", "new.parquet", gates={"max-nfr": 0.01})
    result.passed, result.to_dict()["metrics"]["negative_flip_rate"]

The heavy modules (DuckDB, pandas, numpy, scipy) load on first use, so importing the
package - and ``gaudit --help`` - stays fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "audit_compat", "audit_flips", "GauditError", "InputError"]


def __getattr__(name: str) -> Any:
    if name == "audit_flips":
        from .flips import audit_flips

        return audit_flips
    if name == "audit_compat":
        from .compat import audit_compat

        return audit_compat
    if name in ("GauditError", "InputError", "UsageError"):
        from . import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'graceful_audit' has no attribute {name!r}")
