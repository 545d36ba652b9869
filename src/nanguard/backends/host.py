"""The host side of a guarded ``fit`` on JAX and PyTorch: the run's report.

The engine (:mod:`nanguard.backends.jax`, :mod:`nanguard.backends.torch`) blocks bad updates
inside the step and counts them; this side polls it, turns its bad steps into the report's
incidents (placed by epoch and batch, diagnosed from their batch) and stops ``fit`` when the
engine has halted. It takes over the ``Guard``'s training hooks (see :func:`HostGuard.bind`), so
the TensorFlow code in :mod:`nanguard.guard.callback` never runs on these backends.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import keras
import numpy as np

from nanguard.audit.guard import audit_first_batches
from nanguard.backends import budget
from nanguard.backends.diagnosis import Batch, Weights, diagnose
from nanguard.contract import Incident, Run
from nanguard.diagnose.nonfinite import layers_holding_nonfinite, nonfinite_weights
from nanguard.monitor.preflight import record as record_preflight
from nanguard.monitor.validation import explain as explain_validation
from nanguard.monitor.validation import nonfinite_validation_loss

HOOKS = (
    "set_model",
    "on_train_begin",
    "on_epoch_begin",
    "on_train_batch_end",
    "on_epoch_end",
    "on_train_end",
)


@dataclass
class BadStep:
    """A step whose update the engine blocked: its index within the run, verdict bits, loss."""

    step: int
    flags: int
    loss: float
    batch: Batch | None


class Engine(Protocol):
    """What a backend's guard gives the host (the JAX and PyTorch engines)."""

    async_safe: bool  # may Keras call on_train_batch_end from a worker thread (no sync per step)
    weights_live: bool  # the model's variables hold the trained weights during fit (not at epochs)
    host_steps: int  # batches handed to the step so far in this run
    steps: int  # steps taken (blocked ones included, dead ones after a halt not), at last poll
    halted: bool  # a stop, or the skip budget spent, at the last poll

    def install(
        self, model: keras.Model, policy: str, limits: budget.Limits, on_error: Any
    ) -> None: ...

    def restore(self) -> None: ...

    def poll(self) -> list[BadStep]: ...

    def last_batch(self) -> Batch | None: ...


class HostGuard:
    def __init__(self, guard: Any, engine: Engine, backend: str) -> None:
        self.guard = guard
        self.engine = engine
        self.backend = backend
        self.run: Run | None = None
        self.model: keras.Model | None = None
        self.epochs: list[tuple[int, int]] = []  # (epoch, first host step)
        self._lock = threading.Lock()  # polls may come from Keras' callback threads
        self._last_poll = 0.0
        self._failed = False  # the host side broke in this run; the engine still guards
        self._validation_explained = False  # a non-finite val_loss is looked into once per run
        self._at_start = Weights([], None, [])  # weights holding NaN/Inf when the run began

    def bind(self) -> None:
        """Take over the guard's training hooks (instance attributes shadow its methods)."""
        for name in HOOKS:
            setattr(self.guard, name, getattr(self, name))
        self.guard.async_safe = self.engine.async_safe

    # -- Keras hooks ---------------------------------------------------------------------------

    def set_model(self, model: keras.Model) -> None:
        keras.callbacks.Callback.set_model(self.guard, model)

    def on_train_begin(self, logs: Any = None) -> None:
        # Kept here: on JAX, ``Callback.model`` syncs the model with the trainer's state, which
        # from Keras' callback threads would race with the step that is running.
        guard, model = self.guard, self.guard.model
        self.model = model
        ignored = [
            name
            for name, value in (
                ("bundle_dir", guard.bundle_dir),
                ("tensorboard_dir", guard._tensorboard),
            )
            if value
        ]
        if ignored:
            print(
                f"nanguard: {', '.join(ignored)} need(s) the TensorFlow backend; ignored on "
                f"{self.backend}",
                file=sys.stderr,
            )
        if getattr(model, "optimizer", None) is None:
            return
        try:
            self.engine.install(model, guard.policy, guard.limits, self._crashed)
        except NotImplementedError as exc:
            print(f"nanguard: {exc}; training goes on unguarded", file=sys.stderr)
            return
        self.run = Run(kind="fit", model=model.name, policy=guard.policy)
        guard.report.runs.append(self.run)
        self.epochs, self._failed, self._validation_explained = [], False, False
        if guard.audit:  # the first batches, as on TensorFlow (never breaks training)
            self.run.warnings.extend(audit_first_batches(model, guard.data, guard.verbose))
        record_preflight(self.run, model, guard.data, checks=guard.preflight, echo=guard.verbose)
        try:
            owners = layers_holding_nonfinite(model)
        except Exception as exc:  # the guard must never break the training it protects
            print(f"nanguard: could not read the initial weights ({exc})", file=sys.stderr)
            owners = []
        bad = [name for _, names in owners for name in names]
        self._at_start = Weights(bad, owners[0][0] if owners else None, bad)

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        if self.run is not None:
            self.epochs.append((epoch, self.engine.host_steps))

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        now = time.perf_counter()
        if self.run is not None and now - self._last_poll >= self.guard.poll_interval:
            self._last_poll = now
            self._poll(wait=False)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if self.run is None:
            return
        self._poll(wait=True)
        loss = logs.get("loss") if logs else None
        if loss is not None:
            self.run.epoch_losses.append(float(np.asarray(loss)))
        key = nonfinite_validation_loss(logs)
        if key is not None and not self._validation_explained:
            self._validation_explained = True
            step = max(self.engine.host_steps - 1, 0)
            # On the main thread after the epoch: here ``guard.model`` syncs JAX's state in.
            explain_validation(self.run, self.guard.model, key, step, self.guard.verbose)

    def on_train_end(self, logs: Any = None) -> None:
        if self.run is not None:
            self._finish()

    # -- polling and incidents -----------------------------------------------------------------

    def _poll(self, wait: bool) -> None:
        """Read the engine; one poll at a time (a busy lock means one is running: skip)."""
        if not self._lock.acquire(blocking=wait):
            return
        try:
            run = self.run
            if run is None or self._failed:
                return
            bad = self.engine.poll()
            for i, found in enumerate(bad):
                last = i == len(bad) - 1
                self._add(run, found, "stopped" if last and self.engine.halted else "skipped")
            if self.engine.halted:
                self.model.stop_training = True
        except Exception as exc:  # the guard must never break the training it protects
            self._failed = True
            print(
                f"nanguard: the guard's host side failed ({type(exc).__name__}: {exc}); updates "
                "are still checked in the step, but this run is no longer reported",
                file=sys.stderr,
            )
        finally:
            self._lock.release()

    def _place(self, step: int) -> tuple[int | None, int | None]:
        for epoch, first in reversed(self.epochs):
            if step >= first:
                return epoch, step - first
        return None, None

    def _weights(self) -> Weights:
        """The weights before the step diagnosed: read now where the model's variables are the
        trained ones; else (JAX, whose step keeps every update that makes them non-finite out)
        as they were when the run began."""
        if not self.engine.weights_live:
            return self._at_start
        before = nonfinite_weights(self.model.weights)
        return Weights(self._at_start.at_start, self._at_start.owner, before)

    def _add(
        self, run: Run, found: BadStep, action: str, error: BaseException | None = None
    ) -> None:
        began = time.perf_counter()
        finding = diagnose(
            found.batch,
            self.backend,
            self.model,
            self._weights(),
            found.flags,
            [w for w in run.warnings if w.step == 0],
            error,
        )
        evidence = list(finding.evidence)
        if error is not None:
            evidence.insert(0, f"training raised {type(error).__name__}: {str(error)[:300]}")
        elif found.flags & budget.LOSS_NONFINITE:
            evidence.append(f"loss at this step: {found.loss:g}")
        epoch, batch = self._place(found.step)
        incident = Incident(
            step=found.step,
            epoch=epoch,
            batch=batch,
            symptom="error" if error is not None else budget.symptom(found.flags),
            root_cause=finding.root_cause,
            confidence=finding.confidence,
            layer=finding.layer,
            samples=finding.samples,
            features=finding.features,
            evidence=evidence,
            fixes=finding.fixes,
            action=action,
            diagnosis_seconds=round(time.perf_counter() - began, 3),
        )
        run.incidents.append(incident)
        first = incident is run.incidents[0]
        if self.guard.verbose and (first or action != "skipped"):
            from nanguard.render.terminal import print_incident

            print_incident(run, incident, file=sys.stderr)

    def _crashed(self, error: BaseException) -> None:
        """The step raised: record it as an incident at that step, end the run, undo the patches."""
        run = self.run
        if run is None:
            return
        try:
            with self._lock:
                for found in self.engine.poll():
                    self._add(run, found, "skipped")
                failed = self.engine.host_steps - 1  # the batch being trained on
                self._add(
                    run,
                    BadStep(failed, 0, float("nan"), self.engine.last_batch()),
                    "stopped",
                    error,
                )
            run.status = "crashed"
        except Exception as exc:  # never hide the training's own error
            print(f"nanguard: could not record the error ({exc})", file=sys.stderr)
        finally:
            self._finish()

    def _finish(self) -> None:
        run = self.run
        assert run is not None
        try:
            self._poll(wait=True)
            run.steps = self.engine.steps
            if run.status != "crashed" and self.engine.halted:
                run.status = "stopped"
        finally:
            self.engine.restore()
            self.run = None
        if self.guard.verbose and self.guard.summary:
            from nanguard.render.terminal import print_run_summary

            print_run_summary(run, warnings=False)  # each was printed as it appeared
