"""How the guard stops a hand-written training loop, which no callback can stop: it raises.

TensorFlow-free, so that ``nanguard run`` can tell a guard stop from a crash on any backend.
"""

from __future__ import annotations

STOP_MESSAGE = "nanguard: training stopped"


class TrainingStopped(RuntimeError):
    """Raised in an eager hand-written loop when the guard halts it (policy or skip budget)."""


def is_guard_stop(exc: BaseException) -> bool:
    """Whether ``exc`` is the guard halting a hand-written loop (eagerly, or in graph, where it
    is an error carrying ``STOP_MESSAGE``)."""
    return isinstance(exc, TrainingStopped) or STOP_MESSAGE in str(exc)
