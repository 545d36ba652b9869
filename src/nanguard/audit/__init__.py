"""Audit training data before training: ``nanguard.audit(x, y)`` and ``nanguard audit PATH``.

Readers turn each input into shards of row chunks; mergeable statistics (``stats``, ``partial``)
are computed per shard in one pass, in this process, a process pool or on Dask, and merged; the
checks read the merged statistics; the report is CONTRACT §4. ``nanguard.audit`` is this package,
and calling it calls :func:`~nanguard.audit.api.audit`. Nothing is imported until used, so the
command line's ``--help`` stays instant.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nanguard.audit.api import audit, audit_paths
    from nanguard.audit.report import AuditReport, FeatureSummary, Finding
    from nanguard.audit.source import AuditInputError

__all__ = ["AuditInputError", "AuditReport", "FeatureSummary", "Finding", "audit", "audit_paths"]

_WHERE = {
    "audit": "api",
    "audit_paths": "api",
    "AuditReport": "report",
    "FeatureSummary": "report",
    "Finding": "report",
    "AuditInputError": "source",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"nanguard.audit.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'nanguard.audit' has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """Lets ``nanguard.audit(x, y)`` work although ``nanguard.audit`` is also this package."""

    def __call__(self, x: Any, y: Any = None, num_classes: int | None = None) -> AuditReport:
        from nanguard.audit.api import audit

        return audit(x, y, num_classes)


sys.modules[__name__].__class__ = _CallableModule
