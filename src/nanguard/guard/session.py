"""Guard everything one process trains: every ``fit`` and every hand-written optimizer loop.

Used by ``nanguard run`` (and ``nanguard demo``). ``keras.Model.fit`` gets a :class:`Guard`
appended to its callbacks (unless the script already passes one), on every Keras backend. On
TensorFlow, every Keras optimizer's ``apply`` outside ``fit`` also gets a
:class:`~nanguard.probe.apply.StepProbe` of its own, which in a hand-written loop raises at the
step where the guard halts, since no callback can stop that loop; on JAX and PyTorch the guard
of hand-written loops does not exist (it is built on TensorFlow's graph), so nothing of
TensorFlow is imported there and the session says once that only ``fit`` is guarded.
"""

from __future__ import annotations

import inspect
import sys
from typing import TYPE_CHECKING, Any

import keras

from nanguard.contract import Report, Run
from nanguard.diagnose.rows import Candidates
from nanguard.guard.callback import Guard
from nanguard.probe.halt import is_guard_stop

if TYPE_CHECKING:  # TensorFlow is imported only where loops are guarded (see install)
    from nanguard.probe.apply import StepProbe


class Session:
    def __init__(
        self,
        policy: str = "stop",
        *,
        verbose: bool = True,
        bundle_dir: Any = None,
        quarantine_file: Any = None,
    ) -> None:
        self.policy = policy
        self.bundle_dir = bundle_dir  # where incidents leave repro bundles (see Guard)
        self.quarantine_file = quarantine_file  # where heal lists quarantined records (see Guard)
        self.verbose = verbose
        self.report = Report()
        self.guards_loops = keras.backend.backend() == "tensorflow"
        self._loops: list[tuple[StepProbe, Run]] = []
        self._original_fit: Any = None
        self._original_slices: Any = None
        self._sliced = Candidates()  # arrays the script made datasets of (rows of loop batches)
        self._script: dict[str, Any] | None = None  # the running script's globals

    def install(self) -> None:
        if self.guards_loops:
            from nanguard.probe.apply import guard_loops
            from nanguard.probe.trace import install_call_hooks, install_tape_hook

            install_tape_hook()
            install_call_hooks()
            guard_loops(self._probe_for)
        elif self.verbose:
            print(
                f"nanguard: on Keras' {keras.backend.backend()} backend every fit is guarded; "
                "hand-written training loops are guarded on the TensorFlow backend only",
                file=sys.stderr,
            )
        self._original_fit = keras.Model.__dict__.get("fit")
        inherited = keras.Model.fit
        signature = inspect.signature(inherited)
        session = self

        def fit(model: keras.Model, *args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(model, *args, **kwargs)
            callbacks = list(bound.arguments.get("callbacks") or [])
            if not any(isinstance(c, Guard) for c in callbacks):
                callbacks.append(
                    Guard(
                        session.policy,
                        report=session.report,
                        verbose=session.verbose,
                        summary=False,
                        data=bound.arguments.get("x"),
                        bundle_dir=session.bundle_dir,
                        quarantine_file=session.quarantine_file,
                    )
                )
            bound.arguments["callbacks"] = callbacks
            return inherited(*bound.args, **bound.kwargs)

        fit.__doc__ = inherited.__doc__
        keras.Model.fit = fit
        if self.guards_loops:
            self._record_slices()

    def _record_slices(self) -> None:
        """Remember what ``tf.data.Dataset.from_tensor_slices`` is given, so that a hand-written
        loop's offending samples can be placed in the arrays the script started from."""
        import tensorflow as tf

        self._original_slices = original = tf.data.Dataset.from_tensor_slices
        sliced = self._sliced

        def from_tensor_slices(tensors: Any, name: str | None = None) -> Any:
            sliced.append(tensors[0] if isinstance(tensors, tuple) and tensors else tensors)
            del sliced[:-8]
            return original(tensors, name=name)

        from_tensor_slices.__doc__ = original.__doc__
        tf.data.Dataset.from_tensor_slices = staticmethod(from_tensor_slices)

    def uninstall(self) -> None:
        if self.guards_loops:
            from nanguard.probe.apply import guard_loops

            guard_loops(None)
        if self._original_slices is not None:
            import tensorflow as tf

            tf.data.Dataset.from_tensor_slices = staticmethod(self._original_slices)
        if self._original_fit is not None:
            keras.Model.fit = self._original_fit
        elif "fit" in keras.Model.__dict__:
            del keras.Model.fit

    def _probe_for(self, optimizer: Any) -> StepProbe:
        """The probe guarding ``optimizer``'s loop, made on first use."""
        from nanguard.probe.apply import StepProbe
        from nanguard.probe.capture import BatchCapture
        from nanguard.probe.state import Limits

        if self._script is None and "__main__" in sys.modules:
            # A loop that slices numpy arrays by hand leaves no dataset to trace: its batches
            # are placed in the arrays the script holds (runpy's __main__ while it runs).
            self._script = vars(sys.modules["__main__"])
        for probe, _ in self._loops:
            if probe.optimizer is optimizer:
                return probe
        probe = StepProbe(
            optimizer, self.policy, Limits(), raise_on_halt=True, capture=BatchCapture()
        )
        self._loops.append((probe, Run(kind="custom_loop", model="", policy=self.policy)))
        return probe

    def finish(self, error: BaseException | None = None) -> Report:
        """Turn what the hand-written loops recorded into runs; record a crash if there was one."""
        stopped = error is not None and is_guard_stop(error)
        crash = error if error is not None and not stopped and _training_error(error) else None
        for probe, run in self._loops:
            if probe.state is None:
                continue
            from nanguard.guard.recorder import RunRecorder
            from nanguard.probe.trace import loop_model

            model, loss = loop_model(list(probe.optimizer._trainable_variables))
            run.model = model.name if model is not None else _model_name(probe.variable_names)
            recorder = RunRecorder(
                run,
                probe,
                probe.capture,
                model,
                history_size=20_000,
                start=0,
                source=Candidates([*_arrays_in(self._script), *self._sliced]),
                loss=loss,
                bundle_dir=self.bundle_dir,
            )
            if crash is not None:
                recorder.crash(crash)
                crash = None
            recorder.finish()
            if self.policy == "heal":
                _loop_heal_note(run)
            self.report.runs.append(run)
        loop_runs = [run for probe, run in self._loops if probe.state is not None]
        if crash is not None and not any(r.status == "crashed" for r in self.report.runs):
            loop_runs.append(_crash_run(crash, self.policy))
            self.report.runs.append(loop_runs[-1])
        if self.verbose:
            from nanguard.render.terminal import print_incident

            for run in loop_runs:
                if run.incidents:
                    print_incident(run, run.incidents[0], file=sys.stderr)
        return self.report


def _loop_heal_note(run: Run) -> None:
    """Say what ``heal`` did in a hand-written loop: no host runs between its steps, so it skips
    the bad ones in graph, as ``skip`` does."""
    for incident in run.incidents:
        if incident.action == "skipped":
            incident.evidence.append(
                "heal: skipped this step; in a hand-written loop heal skips bad steps, while "
                "quarantine, rollback and learning-rate changes need model.fit"
            )


def _arrays_in(namespace: dict[str, Any] | None) -> list[Any]:
    """The numpy arrays of a script's globals that could hold training data."""
    import numpy as np

    return [
        v for v in (namespace or {}).values() if isinstance(v, np.ndarray) and v.ndim and len(v) > 1
    ]


def _training_error(error: BaseException) -> bool:
    tf = sys.modules.get("tensorflow")  # only TensorFlow's own errors come from its training
    return tf is not None and isinstance(error, tf.errors.OpError)


def _crash_run(error: BaseException, policy: str) -> Run:
    from nanguard.diagnose import triage

    found = triage.diagnose(triage.Facts(step=0, flags=0, batch=None, history={}, error=error))
    incident = found.incident(
        step=0, epoch=None, batch=None, symptom="error", action="stopped", kept=None
    )
    return Run(kind="custom_loop", model="", policy=policy, status="crashed", incidents=[incident])


def _model_name(variable_names: list[str]) -> str:
    return (
        variable_names[0].split("/")[0] if variable_names and "/" in variable_names[0] else "model"
    )
