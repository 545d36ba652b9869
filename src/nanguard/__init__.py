"""nanguard: step-exact NaN guard and diagnosis for Keras 3 / TensorFlow training.

Importing this package does not import TensorFlow; ``Guard`` does, on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nanguard.contract import Incident, Report, Run

if TYPE_CHECKING:
    from nanguard.guard.callback import Guard

__all__ = ["Guard", "Incident", "Report", "Run"]


def __getattr__(name: str) -> Any:
    if name == "Guard":
        from nanguard.guard.callback import Guard

        return Guard
    raise AttributeError(f"module 'nanguard' has no attribute {name!r}")
