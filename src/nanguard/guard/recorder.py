"""Host-side bookkeeping of one guarded run, shared by ``fit`` and hand-written loops.

``poll()`` costs one small device read; it turns new bad steps into incidents (diagnosed on the
spot, while the pre-step weights are still in memory) and drains the probe's ring buffer into
the bounded :class:`History` before the ring wraps. Every ``sample_every`` executions the host
also copies the weights before and after one execution: weight norms, update/weight ratios, and
a check that no update left a non-finite weight (finite gradients make that a rare overflow).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from nanguard.contract import Incident, Run
from nanguard.diagnose import triage
from nanguard.guard.history import History
from nanguard.probe import state as st
from nanguard.probe.apply import StepProbe
from nanguard.probe.capture import BatchCapture

MAX_DIAGNOSED = 10  # full diagnoses per run; a NaN storm beyond that is reported from its flags


class RunRecorder:
    def __init__(
        self,
        run: Run,
        probe: StepProbe,
        capture: BatchCapture | None,
        model: Any,
        *,
        history_size: int,
        on_incident: Callable[[Run, Incident], None] | None = None,
        start: int | None = None,
        source: Any = None,
        loss: Any = None,
        bundle_dir: Any = None,
    ) -> None:
        """``start``: the global step the run began at, by default now; ``source``: the inputs
        given to ``fit`` (arrays or a ``tf.data`` pipeline), to name the dataset rows of
        offending samples; ``loss``: the Keras loss a hand-written loop used, for the replay;
        ``bundle_dir``: where to write a repro bundle per incident (see
        :mod:`nanguard.diagnose.bundle`)."""
        assert probe.state is not None
        self.run = run
        self.probe = probe
        self.state = probe.state
        self.capture = capture
        self.model = model
        self.on_incident = on_incident
        self.source = source
        self.loss = loss
        self.bundle_dir = bundle_dir
        self.bundles: dict[int, Any] = {}  # incident step -> its bundle's folder
        status = self.state.read_status()
        self.start = int(status[st.STEP]) if start is None else start
        self.seen_bad = 0 if start is not None else int(status[st.TOTAL_BAD])
        self.drained = self.scanned = self.start
        self.executions = 0  # train-function calls the host saw complete (fit)
        self._last_poll = 0.0
        self._before: list[Any] | None = None  # weights at the start of a sampled execution
        self.weights_bad = False
        # Under the guard only an update that overflowed can make finite weights non-finite;
        # weights already non-finite here were set so (adapted on NaN data, a NaN checkpoint).
        self.finite_at_start = model is None or _all_finite(model.weights)
        self.status = status
        self.history = History(probe.variable_names, history_size)
        self.epochs: list[tuple[int, int]] = []  # (epoch, first global step)
        self.diagnosed = 0
        self.monitor: Any = None  # precursor warnings (nanguard.monitor.watch.Monitor), polled
        self.healer: Any = None  # policy "heal" under fit (nanguard.heal.healer.Healer)
        self._start_loss: float | None = None
        self.undone: list[tuple[int, int]] = []  # global steps [start, stop) a heal rolled back

    # -- polling -------------------------------------------------------------------------------

    def batch_done(self, interval: float, sample_every: int) -> None:
        """A train-function call finished; poll if ``interval`` seconds passed since the last poll.

        Polling is what lets the host see an incident; it need not be per step, because the
        graph itself skips bad updates and halts: a ``stop`` only ends the loop a little later.
        """
        self.executions += 1
        if self._before is not None:
            self._sample_weights()
        elif self.executions % sample_every == 0:
            self._before = self.probe.weight_sampler().copy()
        now = time.perf_counter()
        if now - self._last_poll >= interval or self._paused():
            self._last_poll = now
            self.poll()
            if self.healer is not None:
                self.healer.after_batch(self)

    def _paused(self) -> bool:
        """Under heal, a bad step pauses the graph until the host acts, and every batch that
        runs paused is lost to training: so after every batch the host reads the status (a few
        integers, ~25 us on CPU) and polls at once when a new bad step is there."""
        if self.healer is None:
            return False
        return int(self.state.read_status()[st.TOTAL_BAD]) > self.seen_bad

    def _sample_weights(self) -> None:
        before = self._before
        self._before = None
        assert before is not None
        norms, deltas, finite = self.probe.weight_sampler().measure(before)
        status = self.state.read_status()
        step = int(status[st.STEP]) - 1
        ratios = deltas / np.maximum(norms, 1e-12)
        self.history.add_sample(step, norms.astype(np.float32), ratios.astype(np.float32))
        if not finite:
            self.weights_bad = True
            self.drain(step + 1)
            self._add(
                step, st.WEIGHT_NONFINITE, None, None, "skipped" if self.healer else "stopped"
            )
            if self.weights_bad:  # not healed (a rollback would have undone the update)
                self.run.incidents[-1].action = "stopped"

    def poll(self) -> np.ndarray:
        status = self.status = self.state.read_status()
        step = int(status[st.STEP])
        if self.monitor is not None:  # before any incident, so its warnings come first
            self.monitor.poll(self, step)
        if int(status[st.TOTAL_BAD]) > self.seen_bad:
            self.drain(step)
            self._incidents(status)
        elif step - self.drained >= self.state.ring // 2:
            self.drain(step)
        return status

    def catch_up(self) -> None:
        """Poll, then drain every step so far into the history."""
        self.poll()
        self.drain(int(self.status[st.STEP]))

    @property
    def halted(self) -> bool:
        """The graph has stopped updating: a ``stop``, the skip budget spent, or bad weights."""
        return self.weights_bad or st.halted(self.status, self.probe.limits)

    def _stopped(self) -> bool:
        """Whether the run is over: halted, except that under heal a bad step only pauses the
        graph until the healer acts, so there only a spent skip budget ends it."""
        if self.healer is None:
            return self.halted
        spent = self.status[st.TOTAL_BAD : st.CONSECUTIVE_BAD + 1] > self.probe.limits.budget[1:]
        return bool(spent.any())

    @property
    def steps(self) -> int:
        return int(self.status[st.STEP]) - self.start

    def drain(self, upto: int) -> None:
        if upto > self.drained:
            rows = self.state.read_rows(self.drained, upto)
            rows["flags"] = st.flags_of(
                rows["verdicts"],
                rows["scaler_run"],
                self.probe.is_scaler,
                self.probe.limits.scaler_patience,
            )
            self.history.extend(rows)
            self.drained = upto

    def begin_epoch(self, epoch: int) -> None:
        self.status = self.state.read_status()
        self.epochs.append((epoch, int(self.status[st.STEP])))

    def end_epoch(self, keras_loss: float | None) -> None:
        """Record the epoch's loss: Keras' own, unless skipped bad steps made it non-finite or
        a heal rolled some of its steps back, in which case the mean loss of the steps that
        were applied and kept (what the model now is)."""
        self.catch_up()
        if keras_loss is None:
            return
        loss = keras_loss
        first = self.epochs[-1][1] if self.epochs else None
        rolled = first is not None and any(stop > first for _, stop in self.undone)
        if (not np.isfinite(loss) or rolled) and first is not None:
            rows = self.history.rows
            mine = (rows["step"] >= first) & ((rows["flags"] & st.BAD) == 0)
            for start, stop in self.undone:
                mine &= (rows["step"] < start) | (rows["step"] >= stop)
            applied = rows["loss"][mine]
            if len(applied) and np.isfinite(applied).all():
                loss = float(np.mean(applied))
        self.run.epoch_losses.append(loss)

    def place(self, global_step: int) -> tuple[int | None, int | None]:
        """(epoch, batch within the epoch) of a global step, when epochs are known."""
        for epoch, first in reversed(self.epochs):
            if global_step >= first:
                return epoch, global_step - first
        return None, None

    # -- incidents -----------------------------------------------------------------------------

    def _incidents(self, status: np.ndarray) -> None:
        """New bad steps, read from their rows (drained just before)."""
        self.seen_bad = int(status[st.TOTAL_BAD])
        rows = self.history.rows
        new = (rows["step"] >= self.scanned) & ((rows["flags"] & st.BAD) != 0)
        bad = list(zip(rows["step"][new].tolist(), rows["flags"][new].tolist(), strict=True))
        self.scanned = self.drained
        batch = self.capture.take() if self.capture is not None else None
        if bad and not self.weights_bad and not self.probe.weight_sampler().all_finite():
            # Finite gradients, yet the weights are not: unless they were so from the start, the
            # update before the first bad step overflowed (the only way past the in-graph
            # check). That step is the incident.
            self.weights_bad = True
            first = bad[0][0]
            overflowed = self.history.at(first - 1) if self.finite_at_start else None
            if overflowed is not None:
                bad.insert(0, (first - 1, int(overflowed["flags"]) | st.WEIGHT_NONFINITE))
        for i, (global_step, flags) in enumerate(bad):
            held = batch if batch is not None and batch.step == global_step else None
            last = i == len(bad) - 1
            action = "stopped" if last and self._stopped() else "skipped"
            if flags & st.WEIGHT_NONFINITE and not last:  # the overflow: its update was applied
                action = "none"
            self._add(global_step, flags, held, None, action)

    def crash(self, error: BaseException, *, steps_per_execution: int | None = None) -> None:
        """Training raised inside a step: record it as an incident with what is known.

        Ops of a failing graph step are not ordered against the guard's step counter, which may
        or may not have counted it. Under ``fit`` with one step per execution the failing step is
        the one after the executions that completed; otherwise the counter is used (exact for
        eager loops).
        """
        self.status = self.state.read_status()
        if steps_per_execution == 1:
            global_step = self.start + self.executions
        else:
            global_step = int(self.status[st.STEP])
        self.drain(int(self.status[st.STEP]))
        batch = self.capture.take() if self.capture is not None else None
        self._add(global_step, 0, batch, error, "stopped")
        self.run.status = "crashed"

    def _add(
        self, global_step: int, flags: int, batch: Any, error: BaseException | None, action: str
    ) -> None:
        began = time.perf_counter()
        facts = triage.Facts(
            step=global_step - self.start,
            flags=flags,
            batch=batch,
            history=self.history.before(global_step),
            model=self.model,
            error=error,
            loss=self.loss,
            variable_names=self.probe.variable_names,
            source=self.source,
            finite_at_start=self.finite_at_start,
        )
        if self.diagnosed < MAX_DIAGNOSED:
            self.diagnosed += 1
            try:
                found = triage.diagnose(facts)
            except Exception as exc:  # the guard must never break the run it protects
                print(f"nanguard: diagnosis failed ({type(exc).__name__}: {exc})", file=sys.stderr)
                found = triage.Diagnosis(evidence=[f"diagnosis failed: {exc}"])
        else:
            found = triage.Diagnosis(evidence=["not diagnosed: too many incidents in this run"])
        epoch, batch_index = self.place(global_step)
        incident = found.incident(
            step=global_step - self.start,
            epoch=epoch,
            batch=batch_index,
            symptom=triage.symptom(flags, error),
            action=action,
            kept=batch,
            rows_of=lambda samples: self._rows(batch, samples),
            extra_evidence=self._step_evidence(global_step, flags),
            began=began,
        )
        self.run.incidents.append(incident)
        if self.healer is not None:
            self.healer.act(self, incident, found.samples, batch)
        replay = facts.replayed()
        if replay is not None and self.model is not None:
            from nanguard.render.series import record_activations

            record_activations(self.run, incident.step, replay.activations(self.model))
        if self.bundle_dir is not None:
            from nanguard.diagnose.bundle import bundle_incident

            bundle_incident(self, facts, incident)
        if self.on_incident is not None:
            self.on_incident(self.run, incident)

    def _rows(self, batch: Any, samples: list[int]) -> list[int] | None:
        if self.source is None or batch is None:
            return None
        from nanguard.diagnose.rows import dataset_rows

        return dataset_rows(self.source, batch.x, samples)

    def _step_evidence(self, global_step: int, flags: int) -> list[str]:
        row = self.history.at(global_step)
        if row is None or not flags:
            return []
        names = self.probe.variable_names
        grads = row["grad_norms"]
        bad = [names[i] for i in np.flatnonzero(~np.isfinite(grads))]
        facts = []
        if flags & st.LOSS_NONFINITE:
            facts.append(f"loss at this step: {float(row['loss']):g}")
        if bad:
            facts.append(
                f"non-finite gradient norm in {len(bad)} of {len(names)} variables: "
                + ", ".join(bad[:5])
                + (" ..." if len(bad) > 5 else "")
            )
        return facts

    # -- the end -------------------------------------------------------------------------------

    def finish(self) -> Run:
        self.catch_up()
        self.run.steps = self.steps
        if self.run.status != "crashed" and self.halted:
            self.run.status = "stopped"
        if self.run.policy == "heal":
            from nanguard.heal.healer import verdict

            self.run.status = verdict(self.run, *self._loss_ends())
        from nanguard.render.series import attach_series

        attach_series(self.run, self.history, self.start)
        return self.run

    def start_loss(self) -> float | None:
        """The run's starting loss: the median of its first 5 applied steps with a finite loss,
        or the first of them if lower (a run that diverges at once climbs within those 5; an
        extreme record at the first step lifts only that one). Kept once there are 5, as the
        history forgets old steps."""
        if self._start_loss is not None:
            return self._start_loss
        rows = self.history.rows
        ok = ((rows["flags"] & st.BAD) == 0) & np.isfinite(rows["loss"])
        losses = rows["loss"][ok][:5]
        if not len(losses):
            return None
        level = float(min(losses[0], np.median(losses)))
        if len(losses) == 5:
            self._start_loss = level
        return level

    def _loss_ends(self) -> tuple[float | None, float | None, float | None]:
        """The run's first and final loss, and its starting loss: the first and the last epoch's
        loss; with fewer than two epochs, the starting loss and the mean over the last fifth of
        the applied steps."""
        start = self.start_loss()
        if len(self.run.epoch_losses) >= 2:
            return self.run.epoch_losses[0], self.run.epoch_losses[-1], start
        rows = self.history.rows
        losses = rows["loss"][(rows["flags"] & st.BAD) == 0]
        final = float(np.mean(losses[-max(len(losses) // 5, 1) :])) if len(losses) else None
        return start, final, start


def _all_finite(variables: Any) -> bool:
    """Whether every floating-point variable is finite, checked where it lives (no host copy)."""
    import keras
    import tensorflow as tf

    return all(
        bool(tf.reduce_all(tf.math.is_finite(v.value)))
        for v in variables
        if keras.backend.is_float_dtype(v.dtype)
    )
