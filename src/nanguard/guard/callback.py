"""``nanguard.Guard``: the Keras callback that guards ``fit``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from nanguard.backends import backend_guard
from nanguard.contract import POLICIES, Incident, Report, Run
from nanguard.guard.history import History
from nanguard.monitor.validation import explain as explain_validation
from nanguard.monitor.validation import nonfinite_validation_loss

if keras.backend.backend() == "tensorflow":
    from nanguard.guard.fit_patch import FitPatch
    from nanguard.guard.recorder import RunRecorder
    from nanguard.probe import state as st
    from nanguard.probe.apply import StepProbe
    from nanguard.probe.capture import BatchCapture
    from nanguard.probe.state import Limits
    from nanguard.probe.trace import install_tape_hook
else:  # JAX, PyTorch: nanguard.backends guards the run, without TensorFlow
    from nanguard.backends import Limits  # type: ignore[assignment]


class Guard(keras.callbacks.Callback):
    """Step-exact NaN guard for ``model.fit``.

    Every step checks, in graph, that the loss, each gradient and each updated weight is finite,
    and applies the update only if so: a NaN never reaches the weights. On the first bad step the
    offending batch is replayed and diagnosed; then, by ``policy``:

    - ``"stop"`` (default): training stops; the weights are those from before that step.
    - ``"skip"``: the bad batch is skipped and training goes on, until ``max_consecutive`` bad
      steps in a row or ``max_total`` in all, then it stops. Keras' epoch loss still averages
      the skipped batch in (NaN); the report then gives the mean over the applied steps, and
      the replay runs on the weights of the moment the host sees the incident.
    - ``"heal"``: the bad step pauses training in graph (no update) until the host, at its next
      poll, has acted on the diagnosis and resumes it: bad records are quarantined for the
      rest of the run, a diverging run is rolled back to a healthy snapshot with a lower
      learning rate and clipped gradients, mixed precision drops to float32, and a cause only
      a code change fixes stops the run when it recurs (:mod:`nanguard.heal.healer`). The run's
      status is ``healed`` when it then completed with a finite loss that fell.
      ``quarantine_file``: append each quarantined record there (JSON lines).

    The update is skipped in graph, so a NaN never reaches the weights whatever the host does;
    the host reads the guard's state at most every ``poll_interval`` seconds (and at each epoch
    end; by default 0.05 s, 0.01 s under heal), so a ``stop`` ends ``fit``, and a heal acts,
    within that time of the bad step. Weight norms and update
    ratios are measured by the host every ``sample_every`` train-function calls. ``verbose``
    prints the incident card and a summary line (``summary=False`` keeps only the card). ``data``:
    the inputs given to ``fit`` (arrays), so that incidents name their rows (``nanguard run``
    passes them itself). ``bundle_dir``: write a repro bundle per incident (the model with its
    pre-step weights, the batch, the history; at most a few per run) into
    ``bundle_dir/step-<step>``, for ``nanguard replay``; ``guard.bundles`` lists them.
    ``audit``: audit the first batches of ``fit``'s data when training begins (non-finite
    values, out-of-range labels, unscaled inputs, outliers) and add what it finds to the run's
    warnings. ``tensorboard_dir``: also write the probe's measurements, the incidents and the
    warnings to TensorBoard event files there (by the host after each poll, never in the step).
    ``preflight``: check the model, its compile settings and the first batch when training begins.
    ``monitors``: warn before a NaN (growing or vanishing gradients, a diverging loss, updates as
    large as the weights), read by the host every fourth poll interval; every ``activation_every``
    train-function calls (0: never) it also looks for dead ReLUs, saturated units and float16
    peaks with one forward pass over the first batch. Warnings go to ``run.warnings``.

    Example:

    ```python
    guard = nanguard.Guard()
    model.fit(x, y, callbacks=[guard])
    print(guard.report.to_json())
    ```
    """

    def __init__(
        self,
        policy: str = "stop",
        *,
        max_consecutive: int = 10,
        max_total: int = 100,
        history_size: int = 20_000,
        sample_every: int = 50,
        poll_interval: float | None = None,
        verbose: bool = True,
        summary: bool = True,
        report: Report | None = None,
        data: Any = None,
        audit: bool = False,
        bundle_dir: Any = None,
        tensorboard_dir: Any = None,
        preflight: bool = True,
        monitors: bool = True,
        activation_every: int = 200,
        quarantine_file: Any = None,
    ) -> None:
        super().__init__()
        # On JAX and PyTorch this binds nanguard.backends' training hooks here; None on TF.
        self._backend = backend_guard(self, policy)
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}; got {policy!r}")
        if sample_every < 1:
            raise ValueError(f"sample_every must be at least 1; got {sample_every}")
        if activation_every < 0:
            raise ValueError(f"activation_every must be 0 (off) or more; got {activation_every}")
        self.policy = policy
        self.limits = Limits(max_consecutive=max_consecutive, max_total=max_total)
        self.history_size = history_size
        self.sample_every = sample_every
        # Under heal a bad step pauses training until the host's next poll: it polls sooner.
        if poll_interval is None:
            poll_interval = 0.01 if policy == "heal" else 0.05
        self.poll_interval = poll_interval
        self.quarantine_file = quarantine_file
        self.verbose = verbose
        self.summary = summary
        self.report = report if report is not None else Report()
        self.data = data
        self.audit = audit
        self.bundle_dir = bundle_dir
        self.bundles: dict[int, Any] = {}  # the last run's bundles: incident step -> folder
        self._tensorboard: Any = None
        if tensorboard_dir is not None:
            from nanguard.render.tensorboard import TensorBoardWriter

            self._tensorboard = TensorBoardWriter(tensorboard_dir)
        self._patch: FitPatch | None = None
        self._recorder: RunRecorder | None = None
        self._failed = False  # the host side broke in this run; training goes on
        self.history: History | None = None  # the last run's per-step history
        self._training = False
        self._run: Run | None = None
        self._epochs: list[int] = []  # epochs begun before the recorder could start
        self.preflight = preflight
        self.monitors = monitors
        self.activation_every = activation_every
        self._monitor: Any = None  # this run's precursor monitor (nanguard.monitor.watch)
        self._validation_explained = False  # a non-finite val_loss is looked into once per run

    # -- wiring: fit builds its train function right after set_model, before on_train_begin --

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        optimizer = getattr(model, "optimizer", None)
        patch = self._patch
        if patch is not None and patch.model is model and patch.probe.optimizer is optimizer:
            patch.install()
            return
        if patch is not None:
            patch.restore()
        if optimizer is None:
            self._patch = None
            return
        install_tape_hook()
        probe = StepProbe(optimizer, self.policy, self.limits)
        self._patch = FitPatch(model, probe, BatchCapture())
        self._patch.install()

    def on_test_begin(self, logs: Any = None) -> None:
        # set_model also runs for evaluate()/predict(); outside training leave the model alone.
        if not self._training and self._patch is not None:
            self._patch.restore()

    on_predict_begin = on_test_begin

    def on_train_begin(self, logs: Any = None) -> None:
        patch = self._patch
        if patch is None:
            return
        patch.install()
        patch.capture.prepare(self.model.distribute_strategy)
        model = self.model
        self._training, self._failed = True, False
        self._validation_explained = False
        self._run = Run(kind="fit", model=model.name, policy=self.policy)
        self._epochs = []
        self.report.runs.append(self._run)
        if self.audit:  # audit the first batches (never breaks training)
            from nanguard.audit.guard import audit_first_batches

            self._run.warnings.extend(audit_first_batches(model, self.data, self.verbose))
        from nanguard.monitor.watch import begin_run

        self._monitor = begin_run(
            self._run,
            model,
            self.data,
            preflight=self.preflight,
            monitors=self.monitors,
            activation_every=self.activation_every,
            echo=self.verbose,
            interval=4 * self.poll_interval,
        )
        # A model built only by its first step (subclassed, no input shape) has no variables
        # yet: the probe then builds in that step's trace, and the recorder follows.
        if patch.probe.prepare(model.trainable_variables or None):
            patch.probe.state.resume()
            self._start_recorder(start=None)
        self._wrap_train_function()

    def _start_recorder(self, start: int | None) -> RunRecorder | None:
        patch = self._patch
        if patch is None or patch.probe.state is None or self._run is None:
            return None
        self._recorder = recorder = RunRecorder(
            self._run,
            patch.probe,
            patch.capture,
            self.model,
            history_size=self.history_size,
            on_incident=self._announce if self.verbose else None,
            start=start,
            source=self.data,
            bundle_dir=self.bundle_dir,
        )
        self.bundles = recorder.bundles
        recorder.monitor = self._monitor
        controls = patch.probe.controls
        if controls is not None:
            from nanguard.heal.healer import Healer

            recorder.healer = Healer(
                controls,
                self.model,
                patch.probe.optimizer,
                step=recorder.start,
                retrace=self._retrace,
                quarantine_file=self.quarantine_file,
            )
        for epoch in self._epochs:
            recorder.epochs.append((epoch, recorder.start))
        self.history = recorder.history
        return recorder

    def _retrace(self) -> None:
        if self._patch is not None:
            self._patch.retrace()
            self._wrap_train_function()

    def _current_recorder(self) -> RunRecorder | None:
        """The run's recorder, started at the first chance if the probe was built in the step."""
        if self._recorder is None and self._training and not self._failed:
            return self._start_recorder(start=0)
        return self._recorder

    def _wrap_train_function(self) -> None:
        """Record an exception raised inside a step (and undo the patches) before it propagates."""
        model, recorder = self.model, self._recorder
        original = model.train_function
        if original is None or recorder is None:
            return

        def train_function(iterator: Any) -> Any:
            try:
                return original(iterator)
            except (StopIteration, KeyboardInterrupt):
                raise
            except Exception as exc:
                import tensorflow as tf

                if isinstance(exc, tf.errors.OutOfRangeError):
                    raise
                self._crashed(exc)
                raise

        train_function.__wrapped__ = original  # type: ignore[attr-defined]
        model.train_function = train_function

    def _crashed(self, exc: BaseException) -> None:
        recorder = self._current_recorder()
        if recorder is None:
            self._end()
            return
        try:
            recorder.crash(exc, steps_per_execution=self.model.steps_per_execution)
            recorder.finish()
        finally:
            self._end()

    def _safely(self, work: Callable[[RunRecorder], object]) -> None:
        """Run host-side guard work; if it fails, say so once and let training go on."""
        try:
            recorder = self._current_recorder()
            if recorder is None:
                return
            work(recorder)
        except Exception as exc:
            self._recorder = None
            self._failed = True
            print(
                f"nanguard: the guard's host side failed ({type(exc).__name__}: {exc}); updates "
                "are still checked in graph, but this run is no longer reported",
                file=sys.stderr,
            )

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        if self._training:
            self._epochs.append(epoch)
        self._safely(lambda recorder: recorder.begin_epoch(epoch))

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        def work(recorder: RunRecorder) -> None:
            lockstep = self._patch is not None and self._patch.lockstep  # every worker, same batch
            recorder.batch_done(0.0 if lockstep else self.poll_interval, self.sample_every)
            if recorder.monitor is not None:
                recorder.monitor.executed(recorder)
            if self._tensorboard is not None:
                self._tensorboard.update(recorder)
            if recorder.halted:
                self.model.stop_training = True

        self._safely(work)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        def work(recorder: RunRecorder) -> None:
            loss = logs.get("loss") if logs else None
            recorder.end_epoch(None if loss is None else float(np.asarray(loss)))
            if recorder.halted:
                self.model.stop_training = True
            key = nonfinite_validation_loss(logs)
            if key is not None and not self._validation_explained:
                self._validation_explained = True
                step = max(int(recorder.status[st.STEP]) - 1, 0)
                explain_validation(recorder.run, self.model, key, step, self.verbose)

        self._safely(work)

    def on_train_end(self, logs: Any = None) -> None:
        def work(recorder: RunRecorder) -> None:
            if recorder.monitor is not None:
                recorder.monitor.finish(recorder)
            run = recorder.finish()
            if self.verbose and self.summary:
                from nanguard.render.terminal import print_run_summary

                print_run_summary(run, warnings=False)  # each was printed as it appeared

        try:
            self._safely(work)
        finally:
            self._end()

    def _end(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close(self._recorder)
        self._training = False
        self._recorder = None
        if self._patch is not None:
            self._patch.restore()

    def _announce(self, run: Run, incident: Incident) -> None:
        if run.incidents and incident is not run.incidents[0] and incident.action == "skipped":
            return  # one card per run is enough; the rest are in the report
        from nanguard.render.terminal import print_incident

        print_incident(run, incident, file=sys.stderr)
        bundle = self._recorder.bundles.get(incident.step) if self._recorder else None
        if bundle is not None:
            print(f"nanguard: repro bundle: nanguard replay {bundle}", file=sys.stderr)
