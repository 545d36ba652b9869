"""The monitors of one guarded run, driven by the run's recorder when it polls.

At most every ``interval`` seconds of polling (and at every poll that brings an incident) the
monitor reads the probe's ring for the steps it has not seen (the recorder's own history is
drained far less often), keeps a window of recent healthy steps and a few run-level levels
(first and best loss), and runs the gradient and learning-rate checks. Every
``activation_every`` train-function calls it also runs the activation checks on the kept batch.
Whatever fails in here switches the monitors off for the run, never the guard or the training.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from nanguard.contract import Run
from nanguard.diagnose.nonfinite import learning_rate_value
from nanguard.monitor import gradients, learning_rate
from nanguard.monitor.batch import Batch
from nanguard.monitor.findings import Finding, WarningBoard
from nanguard.monitor.layers import LayerGroup, group_norms, layer_groups
from nanguard.probe import state as st

WINDOW = 256  # healthy steps kept for the trend checks
SKIPPED = st.BAD | st.SCALER_SKIP


class Monitor:
    def __init__(
        self,
        run: Run,
        model: Any,
        *,
        echo: bool,
        activation_every: int = 200,
        batch: Batch | None = None,
        interval: float = 0.2,
    ) -> None:
        """``interval``: seconds between checks (a poll with a new incident always checks)."""
        self.interval = interval
        self._last_check = -np.inf
        self.board = WarningBoard(run, echo=echo)
        self.model = model
        self.activation_every = activation_every
        self.batch = batch
        self.failed = False
        self._seen: int | None = None  # global step up to which the ring was read
        self._groups: list[LayerGroup] | None = None
        self._norms = np.zeros((0, 0))  # healthy steps x layers
        self._losses = np.zeros(0)
        self._first: list[float] = []  # the run's first healthy losses
        self._best = (np.inf, 0.0)  # lowest block-median loss, and the gradient norm then
        self._pending: list[tuple[float, float]] = []  # (loss, norm) of the current block
        self._last_sample = -1  # global step of the last weight sample read
        self._update_ratio: float | None = None
        self._sampler: Any = None

    # -- driven by the recorder ----------------------------------------------------------------

    def poll(self, recorder: Any, step: int) -> None:
        """New steps up to global ``step`` are in the probe's ring: read them and check."""
        now = time.perf_counter()
        incident = int(recorder.status[st.TOTAL_BAD]) > recorder.seen_bad
        if incident or now - self._last_check >= self.interval:
            self._last_check = now
            self._safely(self._poll, recorder, step)

    def executed(self, recorder: Any) -> None:
        """A train-function call completed: sample activations on every N-th (and at the end)."""
        every = self.activation_every
        if every and recorder.executions % every == 0:
            self._safely(self._activations, recorder)

    def finish(self, recorder: Any) -> None:
        self._safely(self._poll, recorder, int(recorder.state.read_status()[st.STEP]))
        if self.activation_every and not self.board.run.incidents:  # else the diagnosis says
            self._safely(self._activations, recorder)

    def _safely(self, work: Any, *args: Any) -> None:
        if self.failed:
            return
        try:
            work(*args)
        except Exception as exc:  # monitors must never break the guard or the run
            self.failed = True
            print(
                f"nanguard: the precursor monitors failed ({type(exc).__name__}: {exc}); "
                "no more warnings for this run",
                file=sys.stderr,
            )

    # -- steps ---------------------------------------------------------------------------------

    def _poll(self, recorder: Any, step: int) -> None:
        start = recorder.start if self._seen is None else self._seen
        if step <= start:
            return
        probe = recorder.probe
        rows = recorder.state.read_rows(max(start, step - WINDOW), step)
        flags = st.flags_of(
            rows["verdicts"], rows["scaler_run"], probe.is_scaler, probe.limits.scaler_patience
        )
        self._seen = step
        if self._groups is None:
            variables = list(probe.optimizer._trainable_variables)
            self._groups = layer_groups(self.model, variables, probe.variable_names)
        good = (flags & SKIPPED) == 0
        if not good.any():
            return
        norms = group_norms(rows["grad_norms"][good], self._groups)
        losses = rows["loss"][good].astype(np.float64)
        self._track(losses, np.sqrt(np.square(norms).sum(axis=1)))
        self._norms = np.concatenate([self._norms.reshape(-1, norms.shape[1]), norms])[-WINDOW:]
        self._losses = np.concatenate([self._losses, losses])[-WINDOW:]
        self._sampled_ratio(recorder)
        at = int(rows["step"][good][-1]) - recorder.start
        with np.errstate(all="ignore"):  # norms past float32 (inf) are handled, not reported
            found = self._step_checks()
        for finding in found:
            self.board.add(at, finding)

    def _track(self, losses: np.ndarray, norms: np.ndarray) -> None:
        """Run-level levels: the first healthy losses, and the lowest median over blocks of 5."""
        for loss, norm in zip(losses.tolist(), norms.tolist(), strict=True):
            if len(self._first) < gradients.BLOCK:
                self._first.append(loss)
            self._pending.append((loss, norm))
            if len(self._pending) == gradients.BLOCK:
                block = np.array(self._pending)
                self._pending = []
                level = float(np.median(block[:, 0]))
                if level < self._best[0]:
                    self._best = (level, float(np.median(block[:, 1])))

    def _sampled_ratio(self, recorder: Any) -> None:
        rows = recorder.history.rows
        if len(rows["sample_step"]) and int(rows["sample_step"][-1]) != self._last_sample:
            self._last_sample = int(rows["sample_step"][-1])
            self._update_ratio = learning_rate.global_update_ratio(
                rows["weight_norms"][-1], rows["update_ratios"][-1]
            )

    def _step_checks(self) -> list[Finding]:
        assert self._groups is not None

        def lr() -> float | None:  # a device read: only for a message
            return learning_rate_value(self.model)

        found = [
            gradients.exploding(self._norms, self._groups, self._losses),
            gradients.vanishing(self._norms, self._groups),
        ]
        if self._first and np.isfinite(self._best[0]):
            found.append(
                learning_rate.diverging(
                    self._losses,
                    np.sqrt(np.square(self._norms).sum(axis=1)),
                    initial=float(np.median(self._first)),
                    best=self._best[0],
                    norm_at_best=self._best[1],
                    update_ratio=self._update_ratio,
                    learning_rate=lr,
                )
            )
        if self._update_ratio is not None:
            found.append(learning_rate.large_updates(self._update_ratio, lr))
        return [f for f in found if f is not None]

    # -- activations ---------------------------------------------------------------------------

    def _activations(self, recorder: Any) -> None:
        if self.batch is None or self.model is None:
            return
        if self._sampler is None:
            from nanguard.monitor.activations import sampler_for

            self._sampler = sampler_for(self.model)
        at = max(int(recorder.state.read_status()[st.STEP]) - recorder.start - 1, 0)
        for finding in self._sampler.sample(self.batch.x):
            self.board.add(at, finding)


def begin_run(
    run: Run,
    model: Any,
    data: Any,
    *,
    preflight: bool,
    monitors: bool,
    activation_every: int,
    echo: bool,
    interval: float = 0.2,
) -> Monitor | None:
    """At train begin: keep a batch, record the pre-flight findings at step 0, and return the
    run's monitor (None with ``monitors=False``). Never raises."""
    from nanguard.monitor.preflight import record

    batch = record(run, model, data, checks=preflight, echo=echo)
    if not monitors:
        return None
    return Monitor(
        run, model, echo=echo, activation_every=activation_every, batch=batch, interval=interval
    )
