"""The per-step history of a run, downsampled for plots: the non-JSON side of a report.

The contract JSON (CONTRACT §3) has no per-step data, and a 10,000-step history with per-variable
gradient norms is far too big to paste into an HTML page. :func:`series_of` keeps at most
``MAX_POINTS`` buckets of consecutive steps and, per bucket, what a plot needs to show every
spike: the loss's min, max and mean, each gradient norm's max, and how many steps were bad.
Sampled weight measurements (every ``sample_every`` calls) are bucketed the same way.

A series is a plain dict (so ``series.json`` is just its JSON) with these keys, steps counted
from the start of the run as in the report:

``variables``
    trainable variable names, the row order of every per-variable list.
``bucket``, ``step``
    steps per bucket, and the first step of each bucket.
``loss_min``, ``loss_max``, ``loss_mean``, ``grad_norm``
    per bucket, over the finite values of its steps (``None`` when there was none); ``grad_norm``
    is the largest global gradient norm (over all variables) of the bucket.
``grad_norms``
    one list per variable: the largest finite gradient norm in each bucket.
``grad_nonfinite``
    one list per variable: the buckets in which its gradient norm was not finite.
``bad``
    per bucket, how many steps the guard flagged (skipped or stopped at).
``sample_step``, ``update_ratios``, ``weight_norms``
    sampled steps, and per variable the update/weight ratio (largest of the bucket) and the
    weight norm there.
``activations``
    ``{incident step: [ActivationRange, ...]}`` in layer order: each layer's output range in
    the replay of that step. Filled by the diagnosis when it replays layer by layer; drawn with
    the float16 limit when present.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

MAX_POINTS = 600  # buckets per series: one or two pixels each on a 1000-pixel-wide plot
FLAGGED = 1 | 2 | 4 | 8 | 32  # nanguard.probe.state.BAD, without importing TensorFlow's side


class ActivationRange(NamedTuple):
    """The output range of one layer in the replay of an incident step.

    ``peak`` is the largest absolute value; any field may be ``inf`` or ``nan`` (the layer that
    overflowed). A tuple, so it is a plain JSON list in ``series.json``.
    """

    layer: str
    min: float
    max: float
    peak: float


def _rounded(values: np.ndarray) -> list[float | None]:
    """Four significant digits are plenty for a plot and keep the JSON small; ``None`` where
    not finite. Vectorised: the integer of the kept digits times or over an exact power of ten
    is the double nearest that decimal, so it prints short."""
    v = np.asarray(values, np.float64)
    finite = np.isfinite(v)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        magnitude = np.where(finite & (v != 0), np.abs(v), 1.0)
        shift = np.clip(3 - np.floor(np.log10(magnitude)), -300, 300)
        up, down = 10.0 ** np.maximum(shift, 0), 10.0 ** np.maximum(-shift, 0)
        rounded = np.where(shift >= 0, np.round(v * up) / up, np.round(v / down) * down)
    return [x if ok else None for x, ok in zip(rounded.tolist(), finite.tolist(), strict=True)]


def _bucket_reduce(values: np.ndarray, size: int, how: str) -> np.ndarray:
    """Reduce consecutive groups of ``size`` rows (along axis 0) over their finite values;
    NaN where a group has none."""
    n = len(values)
    groups = -(-n // size)
    pad = groups * size - n
    padded = np.concatenate([values.astype(np.float64), np.full((pad, *values.shape[1:]), np.nan)])
    blocks = padded.reshape(groups, size, *values.shape[1:])
    finite = np.isfinite(blocks)
    count = finite.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if how == "max":
            out = np.where(finite, blocks, -np.inf).max(axis=1)
        elif how == "min":
            out = np.where(finite, blocks, np.inf).min(axis=1)
        else:
            out = np.where(finite, blocks, 0.0).sum(axis=1) / count
    return np.where(count > 0, out, np.nan)


def series_of(
    rows: dict[str, np.ndarray],
    variables: list[str],
    start: int = 0,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A plot-ready copy of a :class:`~nanguard.guard.history.History`'s rows (``start``: the
    global step at which the run began); keeps the ``activations`` of ``previous``."""
    steps = rows["step"].astype(np.int64) - start
    n = len(steps)
    size = max(1, -(-n // MAX_POINTS))
    grads = np.asarray(rows["grad_norms"], np.float64).reshape(n, len(variables))
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.sqrt(np.square(grads).sum(axis=1))
    bad = (np.asarray(rows["flags"]) & FLAGGED) != 0
    nonfinite = _bucket_reduce((~np.isfinite(grads)).astype(np.float64), size, "max")
    series: dict[str, Any] = {
        "variables": list(variables),
        "bucket": size,
        "step": steps[::size].tolist(),
        "loss_min": _rounded(_bucket_reduce(rows["loss"], size, "min")),
        "loss_max": _rounded(_bucket_reduce(rows["loss"], size, "max")),
        "loss_mean": _rounded(_bucket_reduce(rows["loss"], size, "mean")),
        "grad_norm": _rounded(_bucket_reduce(total, size, "max")),
        "grad_norms": [_rounded(col) for col in _bucket_reduce(grads, size, "max").T],
        "grad_nonfinite": [np.flatnonzero(col > 0).tolist() for col in nonfinite.T],
        "bad": _counts(bad, size),
    }
    sampled = rows["sample_step"].astype(np.int64) - start
    size = max(1, -(-len(sampled) // MAX_POINTS))
    shape = (len(sampled), len(variables))
    ratios = np.asarray(rows["update_ratios"], np.float64).reshape(shape)
    norms = np.asarray(rows["weight_norms"], np.float64).reshape(shape)
    series["sample_step"] = sampled[::size].tolist()
    series["update_ratios"] = [_rounded(c) for c in _bucket_reduce(ratios, size, "max").T]
    series["weight_norms"] = [_rounded(c) for c in _bucket_reduce(norms, size, "max").T]
    series["activations"] = dict((previous or {}).get("activations") or {})
    return series


def attach_series(run: Any, history: Any, start: int) -> None:
    """Set ``run.series`` from a :class:`~nanguard.guard.history.History` at the end of a run;
    a failure here costs the plots, never the report."""
    try:
        run.series = series_of(history.rows, history.variable_names, start, previous=run.series)
    except Exception as exc:
        print(f"nanguard: no plots for this run ({type(exc).__name__}: {exc})", file=sys.stderr)


def record_activations(run: Any, step: int, ranges: list[ActivationRange]) -> None:
    """Attach the layer ranges of the replay of incident ``step`` to ``run`` (a
    :class:`~nanguard.contract.Run`), before or after the recorder's ``finish``."""
    if run.series is None:
        run.series = {"activations": {}}
    run.series.setdefault("activations", {})[step] = [ActivationRange(*r) for r in ranges]


def _counts(flags: np.ndarray, size: int) -> list[int]:
    n = len(flags)
    groups = -(-n // size)
    padded = np.concatenate([flags.astype(np.int64), np.zeros(groups * size - n, np.int64)])
    return padded.reshape(groups, size).sum(axis=1).tolist()


def activations(series: dict[str, Any] | None, step: int) -> list[ActivationRange]:
    """The layer ranges recorded for an incident step, from memory or from ``series.json``."""
    if not series:
        return []
    table = series.get("activations") or {}
    found = table.get(step, table.get(str(step)))
    return [ActivationRange(*row) for row in found or []]


def save_series(runs: list[Any], path: str | Path) -> Path:
    """Write the series of each run (``None`` where a run has none) to ``path``.

    Not strict JSON: an activation that overflowed stays ``Infinity``/``NaN``, which Python's
    ``json`` reads back as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"series": 1, "runs": [getattr(run, "series", None) for run in runs]}
    path.write_text(json.dumps(payload, separators=(",", ":")) + "\n", encoding="utf-8")
    return path


def load_series(path: str | Path) -> list[dict[str, Any] | None]:
    """The per-run series saved by :func:`save_series`; raises ``ValueError`` if malformed."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise ValueError("not a nanguard series file (no 'runs' list)")
    runs = data["runs"]
    if not all(run is None or isinstance(run, dict) for run in runs):
        raise ValueError("not a nanguard series file (a run is not an object)")
    return runs
