"""nanguard: step-exact NaN guard and diagnosis for Keras 3 / TensorFlow training.

Importing this package does not import TensorFlow; ``Guard`` does, on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nanguard.contract import Incident, Report, Run

if TYPE_CHECKING:
    from nanguard import audit
    from nanguard.guard.callback import Guard
    from nanguard.monitor.lint import lint
    from nanguard.monitor.lr_find import find_lr

__all__ = ["Guard", "Incident", "Report", "Run", "audit", "find_lr", "lint"]


def __getattr__(name: str) -> Any:
    if name == "Guard":
        from nanguard.guard.callback import Guard

        return Guard
    if name == "audit":  # the package, callable: nanguard.audit(x, y, num_classes)
        import nanguard.audit

        return nanguard.audit
    if name == "lint":
        from nanguard.monitor.lint import lint

        return lint
    if name == "find_lr":
        from nanguard.monitor.lr_find import find_lr

        return find_lr
    raise AttributeError(f"module 'nanguard' has no attribute {name!r}")
