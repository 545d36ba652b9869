"""Warnings grouped for reading: a monitor may repeat one warning at many steps."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nanguard.contract import Warning

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


@dataclass
class WarningGroup:
    """All warnings with one code on one layer: its first message, steps and worst severity."""

    code: str
    layer: str | None
    severity: str
    message: str
    first: int
    last: int
    count: int


def group_warnings(warnings: Iterable[Warning]) -> list[WarningGroup]:
    """One group per (code, layer), in the order of their first step."""
    groups: dict[tuple[str, str | None], WarningGroup] = {}
    for w in warnings:
        key = (w.code, w.layer)
        group = groups.get(key)
        if group is None:
            groups[key] = WarningGroup(w.code, w.layer, w.severity, w.message, w.step, w.step, 1)
            continue
        group.count += 1
        group.first, group.last = min(group.first, w.step), max(group.last, w.step)
        if SEVERITY_RANK.get(w.severity, 0) > SEVERITY_RANK.get(group.severity, 0):
            group.severity = w.severity
    return sorted(groups.values(), key=lambda g: g.first)


def steps_text(group: WarningGroup) -> str:
    if group.count == 1:
        return f"step {group.first}"
    return f"steps {group.first}-{group.last}, {group.count}x"
