"""TensorBoard event files of a guarded run, written by the host from what it already polled.

Nothing runs in the training step: after each poll, :meth:`TensorBoardWriter.update` appends the
history rows drained since the last call (loss, global and per-variable gradient norms, and every
``HISTOGRAM_EVERY`` steps their histogram over the variables), the sampled weight norms and
update/weight ratios (also as histograms over the variables), and any new incident or warning as
text, with the global step of the probe.

Events are written as ``Event`` protocol buffers into a TFRecord file named like TensorBoard's
own (``events.out.tfevents.*``), with the plugin metadata ``tf.summary`` would set (``scalars``,
``histograms``, ``text``): the same bytes as ``tf.summary.scalar`` & co., without needing the
``tensorboard`` package (which TensorFlow no longer installs) and without an eager op per value,
which costs about a millisecond each here.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from nanguard.contract import Incident, Run
from nanguard.render.words import CAUSE, SYMPTOM, action_text, facts, where

_SCALAR, _TENSOR = 1, 2  # SummaryMetadata.DataClass: DATA_CLASS_SCALAR, DATA_CLASS_TENSOR
_FLAGGED = 1 | 2 | 4 | 8 | 32  # nanguard.probe.state.BAD
HISTOGRAM_EVERY = 10  # steps between histograms of the per-variable gradient norms


class TensorBoardWriter:
    """Appends a guarded run's measurements to event files under ``logdir``.

    One writer per :class:`~nanguard.Guard`; each ``fit`` call gets its own event file, steps
    are the optimizer's global steps, so runs of one model follow each other on the x axis. If
    writing fails (disk full, ...) it says so once and stops: TensorBoard never breaks training.
    """

    def __init__(self, logdir: str | Path) -> None:
        self.logdir = Path(logdir)
        self._file: Any = None
        self._described: set[str] = set()  # tags whose metadata this file already holds
        self._next_step: int | None = None
        self._next_sample: int | None = None
        self._incidents = 0
        self._warnings = 0
        self.failed = False

    # -- what the guard calls -------------------------------------------------------------------

    def update(self, recorder: Any) -> None:
        """Write what ``recorder`` (a :class:`~nanguard.guard.recorder.RunRecorder`) learnt
        since the last call."""
        if self.failed:
            return
        try:
            self._update(recorder)
        except Exception as exc:  # the guard must never break the run it protects
            self.failed = True
            print(
                f"nanguard: TensorBoard writing to {self.logdir} failed "
                f"({type(exc).__name__}: {exc}); no more events are written",
                file=sys.stderr,
            )

    def close(self, recorder: Any = None) -> None:
        """Write what is left (when given the recorder) and close this run's event file."""
        if recorder is not None:
            self.update(recorder)
        if self._file is not None:
            self._file.close()
        self._file = None
        self._described.clear()
        self._next_step = self._next_sample = None
        self._incidents = self._warnings = 0

    # -- writing --------------------------------------------------------------------------------

    def _update(self, recorder: Any) -> None:
        history, run, start = recorder.history, recorder.run, recorder.start
        rows = history.rows
        names = history.variable_names
        wrote = self._steps(rows, names, start)
        wrote |= self._samples(rows, names)
        wrote |= self._texts(run, start)
        if wrote:
            self._file.flush()

    def _steps(self, rows: dict[str, np.ndarray], names: list[str], start: int) -> bool:
        steps = rows["step"]
        if self._next_step is None:
            self._next_step = start
        new = np.flatnonzero(steps >= self._next_step)
        if not len(new):
            return False
        grads = np.asarray(rows["grad_norms"], np.float64)[new]
        with np.errstate(over="ignore", invalid="ignore"):
            total = np.sqrt(np.square(grads).sum(axis=1))
        loss = rows["loss"][new]
        bad = (rows["flags"][new] & _FLAGGED) != 0
        tags = ["loss", "grad_norm/global", "flagged", *(f"grad_norm/{n}" for n in names)]
        for k, step in enumerate(steps[new].tolist()):
            values = [float(loss[k]), float(total[k]), float(bad[k]), *grads[k].tolist()]
            event = [self._scalar(t, v) for t, v in zip(tags, values, strict=True)]
            if step % HISTOGRAM_EVERY == 0:
                event.append(self._histogram("grad_norm_log10", grads[k]))
            self._event(step, event)
        self._next_step = int(steps[new[-1]]) + 1
        return True

    def _samples(self, rows: dict[str, np.ndarray], names: list[str]) -> bool:
        sampled = rows["sample_step"]
        new = np.flatnonzero(sampled >= (self._next_sample or 0))
        if not len(new):
            return False
        for i in new.tolist():
            ratios = np.asarray(rows["update_ratios"][i], np.float64)
            norms = np.asarray(rows["weight_norms"][i], np.float64)
            values = [
                *(self._scalar(f"update_ratio/{n}", r) for n, r in zip(names, ratios, strict=True)),
                *(self._scalar(f"weight_norm/{n}", w) for n, w in zip(names, norms, strict=True)),
                self._histogram("update_ratio_log10", ratios),
            ]
            self._event(int(sampled[i]), values)
        self._next_sample = int(sampled[new[-1]]) + 1
        return True

    def _texts(self, run: Run, start: int) -> bool:
        incidents = run.incidents[self._incidents :]
        warnings = run.warnings[self._warnings :]
        for incident in incidents:
            self._event(start + incident.step, [self._text("nanguard/incident", _card(incident))])
        for w in warnings:
            line = f"**{w.severity}** `{w.code}`" + (f" in `{w.layer}`" if w.layer else "")
            self._event(start + w.step, [self._text("nanguard/warning", f"{line}: {w.message}")])
        self._incidents += len(incidents)
        self._warnings += len(warnings)
        return bool(incidents or warnings)

    # -- protocol buffers ---------------------------------------------------------------------

    def _open(self) -> Any:
        import tensorflow as tf
        from tensorflow.core.util import event_pb2

        self.logdir.mkdir(parents=True, exist_ok=True)
        name = (
            f"events.out.tfevents.{time.time():.0f}.{socket.gethostname()}.{os.getpid()}."
            f"{time.monotonic_ns()}.v2"
        )
        self._file = tf.io.TFRecordWriter(str(self.logdir / name))
        first = event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")
        self._file.write(first.SerializeToString())
        return self._file

    def _event(self, step: int, values: list[Any]) -> None:
        from tensorflow.core.framework import summary_pb2
        from tensorflow.core.util import event_pb2

        if self._file is None:
            self._open()
        event = event_pb2.Event(
            wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=values)
        )
        self._file.write(event.SerializeToString())

    def _value(self, tag: str, plugin: str, data_class: int, tensor: Any) -> Any:
        from tensorflow.core.framework import summary_pb2

        value = summary_pb2.Summary.Value(tag=tag, tensor=tensor)
        if tag not in self._described:  # TensorBoard reads a tag's metadata from its first value
            self._described.add(tag)
            value.metadata.plugin_data.plugin_name = plugin
            value.metadata.data_class = data_class
        return value

    def _scalar(self, tag: str, number: float) -> Any:
        from tensorflow.core.framework import tensor_pb2, types_pb2

        tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[number])
        return self._value(tag, "scalars", _SCALAR, tensor)

    def _histogram(self, tag: str, values: np.ndarray, bins: int = 20) -> Any:
        """Histogram of log10 of the positive finite ``values``: TensorBoard's (k, 3) tensor of
        (left edge, right edge, count)."""
        from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

        values = values[np.isfinite(values) & (values > 0)]
        counts, edges = np.histogram(np.log10(values), bins=bins) if len(values) else ([], [])
        table = (
            np.stack([edges[:-1], edges[1:], counts], axis=1) if len(counts) else np.zeros((0, 3))
        )
        shape = tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in table.shape]
        )
        tensor = tensor_pb2.TensorProto(
            dtype=types_pb2.DT_DOUBLE,
            tensor_shape=shape,
            tensor_content=table.astype("<f8").tobytes(),
        )
        return self._value(tag, "histograms", _TENSOR, tensor)

    def _text(self, tag: str, text: str) -> Any:
        from tensorflow.core.framework import tensor_pb2, types_pb2

        tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[text.encode()])
        return self._value(tag, "text", _TENSOR, tensor)


def _card(incident: Incident) -> str:
    """The incident as Markdown, which TensorBoard's text dashboard renders."""
    lines = [
        f"**{incident.root_cause}** ({incident.confidence:.0%}): "
        f"{SYMPTOM.get(incident.symptom, incident.symptom)} at "
        f"{where(incident.step, incident.epoch, incident.batch)}",
        "",
        CAUSE.get(incident.root_cause, ""),
    ]
    where_parts = [f"layer `{incident.layer}`"] if incident.layer else []
    if incident.op:
        where_parts.append(f"op `{incident.op}`")
    if incident.samples:
        where_parts.append(f"batch positions {incident.samples[:20]}")
    if incident.dataset_indices:
        where_parts.append(f"dataset rows {incident.dataset_indices[:20]}")
    if where_parts:
        lines += ["", "; ".join(where_parts)]
    if incident.fixes:
        lines += ["", f"**Fix first:** {incident.fixes[0]}"]
    lines += ["", *(f"- {fact}" for fact in facts(incident))]
    lines += ["", f"Action: {action_text(incident)}"]
    return "\n".join(lines)
