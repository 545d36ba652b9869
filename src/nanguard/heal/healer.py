"""Host side of ``policy="heal"``: act on each incident's diagnosis, and judge the run at its end.

The bad step itself was blocked in graph, and it paused the graph (no update from any step) until
the host has acted and resumes it. The host looks for a pause after every train-function call
(see :meth:`~nanguard.guard.recorder.RunRecorder.batch_done`), so in ``fit`` no batch is lost to
it (with ``steps_per_execution > 1``, only the rest of that call's steps), and none runs on what
the heal is about to change. By root cause:

- bad records (``input_nonfinite``, ``target_nonfinite``, ``label_out_of_range``,
  ``input_outlier``, ``invalid_target``): quarantine them for the rest of the run, by rule
  (non-finite values, labels outside the output units) or by fingerprint (the named samples);
  if quarantine then drops most of the data, the data itself is broken: stop;
- training dynamics (``learning_rate_too_high``, ``exploding_gradients``,
  ``bad_initialization``, ``unscaled_input``): roll back to the last healthy snapshot, lower
  the learning rate (for unscaled inputs, by their scale) and clip gradients at a norm learned
  from the healthy steps; then watch the loss, and roll back lower again if it climbs or stays
  above where the run started. A bad initialization is first healed by redrawing the
  offending kernels in the initial weights; weights already non-finite before the first step
  (a layer adapted on data with NaN) have no finite state to go back to: stop;
- code (``unstable_loss``, ``unstable_op``, ``unstable_gradient``, ``output_loss_mismatch``):
  skip the step; if it recurs, stop, since only a code change fixes it;
- ``float16_overflow``: compute in float32 from the next step on.

Every retry is bounded (rollbacks, quarantined records, the skip budget); each action is the
incident's ``action`` plus an evidence line that starts with ``heal:``. A run is ``healed`` only
if it completed with a finite loss that fell.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from nanguard.contract import Incident, Run
from nanguard.heal.controls import HealControls, fingerprints
from nanguard.heal.snapshots import Snapshot, Snapshots
from nanguard.probe import state as st

RECORDS = (
    "input_nonfinite",
    "target_nonfinite",
    "label_out_of_range",
    "input_outlier",
    "invalid_target",
)
DYNAMICS = ("learning_rate_too_high", "exploding_gradients", "bad_initialization", "unscaled_input")
CODE = ("unstable_loss", "unstable_op", "unstable_gradient", "output_loss_mismatch")
LR_BACKOFF = 0.3  # learning-rate factor per rollback
MAX_ROLLBACKS = 5
WATCH_EVERY = 10  # steps between looks at the loss after a rollback (at the polls)
CLIP_HEADROOM = 4  # clip at this many times what healthy steps reached: a bound, not a brake
SETTLE_STEPS = 30  # steps after a rollback by which the loss should be back below its start
CALM_STEPS = 10  # snapshots are taken only this many steps after the last incident
BROKEN_DATA = 0.5  # quarantine dropping more than this share of the samples it saw: stop
BROKEN_AFTER = 256  # ... once it saw at least this many


class Healer:
    """Heals one guarded ``fit`` run; the recorder calls it after each batch and incident.
    ``step``: the global step the run starts at; ``retrace``: rebuilds the train function (after
    a dtype change); ``quarantine_file``: where quarantined records are appended."""

    def __init__(
        self,
        controls: HealControls,
        model: Any,
        optimizer: Any,
        *,
        step: int,
        retrace: Callable[[], None] | None = None,
        quarantine_file: Any = None,
    ) -> None:
        self.controls = controls
        self.model = model
        self.optimizer = optimizer
        self.snapshots = Snapshots(model, optimizer)
        self.retrace = retrace
        self.quarantine_file = Path(quarantine_file) if quarantine_file is not None else None
        self.rollbacks = 0
        self.code_causes: list[tuple[str, int]] = []
        self.data_incident: Incident | None = None  # the last quarantine, for a broken-data stop
        self._rolled_at = -1  # the train-function call of the last rollback
        self._rolled_for: Incident | None = None  # the incident of the last rollback
        self._rolled_step = step  # the global step of the last rollback
        self._watched: float | None = None  # the loss level rolled back to
        self._watched_at = step  # the global step of the last look
        self._last_bad = step  # global step of the last incident (snapshots wait for calm)
        self._remedied = False  # the incident being handled got a remedy, not just a skip
        self._rescaled = False  # bad initialization was healed once by redrawing kernels
        self._scaled = False  # unscaled inputs got their learning rate for their scale once
        self.snapshots.take(step, None)  # the run's initial state, the last resort

    # -- each batch ------------------------------------------------------------------------------

    def after_batch(self, recorder: Any) -> None:
        if recorder.halted:
            return
        step = int(recorder.status[st.STEP])
        if self.rollbacks and step - self._watched_at >= WATCH_EVERY:
            self._watched_at = step
            self._watch(recorder, step)
        calm = step - self._last_bad >= CALM_STEPS
        if calm and self.snapshots.due(step):
            self.snapshots.take(step, self._level(recorder, step))
        if self.data_incident is not None:
            self._check_quarantine(recorder)

    def _check_quarantine(self, recorder: Any) -> None:
        """Stop when quarantine drops most of the data: that is no longer a few bad records."""
        seen, dropped = self.controls.quarantine_counts()
        if seen < BROKEN_AFTER or dropped <= BROKEN_DATA * seen:
            return
        incident, self.data_incident = self.data_incident, None
        assert incident is not None
        incident.action = "stopped"
        incident.evidence.append(
            f"heal: quarantine then dropped {dropped} of the next {seen} samples "
            f"({dropped / seen:.0%}): the data itself is broken, not a few records; stopped"
        )
        self._halt(recorder)

    def _watch(self, recorder: Any, step: int) -> None:
        """After a rollback the loss may diverge again without a NaN yet, or stay worse than
        where the run started: roll back again (lower) when the recent loss level (a median
        over 10 steps) climbs to 10x the lowest level since the rollback, or is still above
        1.5x the run's starting loss ``SETTLE_STEPS`` steps after it."""
        level = self._level(recorder, step)
        if level is None:
            return
        self._watched = level if self._watched is None else min(self._watched, level)
        start = recorder.start_loss()
        if level > 10 * abs(self._watched):
            why = f"the loss climbed again to {level:.3g}"
        elif (
            start is not None
            and step - self._rolled_step >= SETTLE_STEPS
            and level > start + 0.5 * abs(start)
        ):
            why = f"the loss is still {level:.3g}, above the run's starting {start:.3g}"
        else:
            return
        incident = self._rolled_for
        assert incident is not None
        said = self._roll_back(recorder, incident, recorder.start + incident.step)
        incident.evidence.append(f"heal: at step {step - recorder.start} {why}; {said}")

    @staticmethod
    def _level(recorder: Any, step: int) -> float | None:
        """The loss level just before global step ``step``: median of the last 10 losses."""
        recorder.drain(step)
        losses = recorder.history.rows["loss"][-10:]
        losses = losses[np.isfinite(losses)]
        return float(np.median(losses)) if len(losses) else None

    # -- each incident ---------------------------------------------------------------------------

    def act(self, recorder: Any, incident: Incident, samples: list[int], batch: Any) -> None:
        """Heal after ``incident`` (diagnosed; ``samples``: its batch positions in ``batch``, the
        kept batch): set its action and say what was done."""
        if incident.action == "stopped":  # the skip budget is spent: nothing left to heal
            return
        cause = incident.root_cause
        self._last_bad = recorder.start + incident.step
        self._remedied = False
        try:
            if cause in RECORDS:
                said = self._quarantine(recorder, incident, samples, batch)
            elif cause == "bad_initialization" and not recorder.finite_at_start:
                self._halt(recorder)
                incident.action = "stopped"
                said = (
                    "weights that were non-finite before the first step have no finite state "
                    "to roll back to: only a change to the script fixes them (see the fix); "
                    "stopped"
                )
            elif cause == "bad_initialization" and not self._rescaled:
                said = self._reinitialize(recorder, incident)
            elif cause in DYNAMICS and self._rolled_at == recorder.executions:
                said = self._skip(incident, "healed already after an earlier step of this call")
            elif cause in DYNAMICS:
                backoff = self._backoff(incident, batch)
                said = self._roll_back(recorder, incident, self._last_bad, backoff)
            elif cause in CODE:
                said = self._skip_once(recorder, incident)
            elif cause == "float16_overflow":
                said = self._to_float32(incident)
            else:
                said = self._skip(incident, "no remedy is known for this cause")
        except Exception as exc:  # a failed heal must not break the run: it degrades to skip
            print(f"nanguard: heal failed ({type(exc).__name__}: {exc})", file=sys.stderr)
            said = self._skip(incident, f"could not heal ({type(exc).__name__}: {exc})")
        incident.evidence.append(f"heal: {said}")
        if incident.action != "stopped":
            self._resume(recorder)

    def _quarantine(self, recorder: Any, incident: Incident, samples: list[int], batch: Any) -> str:
        cause, controls = incident.root_cause, self.controls
        if not controls.filtering:
            return self._skip(incident, "this model's batches cannot be filtered")
        if cause in ("input_nonfinite", "target_nonfinite"):
            controls.drop_nonfinite()
            said = "every sample with a non-finite input, target or weight"
        elif cause == "label_out_of_range":
            classes = _output_units(self.model, batch)
            if classes is None:
                return self._skip(incident, "the output units are unknown")
            controls.limit_labels(classes)
            said = f"every sample whose label is outside [0, {classes})"
        else:
            prints = _record_prints(recorder.source, incident, samples, batch)
            if prints is None:
                return self._skip(incident, "the offending records could not be identified")
            added = controls.quarantine(prints)
            if not added:
                return self._skip(incident, "the quarantine is full")
            said = f"{added} record(s)"
        if incident.dataset_indices:
            said += f" (dataset rows {', '.join(map(str, incident.dataset_indices[:10]))})"
        incident.action, self.data_incident, self._remedied = "quarantined", incident, True
        self._write_quarantine(incident, samples, batch)
        said = f"quarantined for the rest of the run: {said}"
        if not samples and cause in ("input_outlier", "invalid_target"):
            # The records are not in this batch: an earlier, finite update from them did the
            # damage, which a rollback undoes.
            snapshot = self.snapshots.choose(self._last_bad, recorder.start_loss())
            if snapshot is not None:
                self._restore(recorder, snapshot)
                said += (
                    "; their earlier update was undone by rolling back to the state before step "
                    f"{snapshot.step - recorder.start}"
                )
        return said

    def _reinitialize(self, recorder: Any, incident: Incident) -> str:
        """Roll back to the initial weights with each kernel whose initializer draws far above
        the Glorot/He scale brought to that scale: a zero-mean draw is rescaled (its shape
        kept); one with a mean of its own, such as uniform [0, 1], which no scale fixes, is
        drawn afresh: He uniform before a ReLU-like activation (Glorot's scale halves the signal
        at each such layer, so a deep stack would start with vanishing gradients), else Keras'
        default, Glorot uniform; a recurrent kernel always gets Keras' orthogonal default, as a
        rescaled random matrix still grows a signal over time steps.
        Once; then like the other causes of divergence."""
        from nanguard.diagnose.magnitude import INIT_RATIO, kernels

        self._rescaled = True
        initial = self.snapshots.initial
        index = {id(v): i for i, v in enumerate(self.snapshots.variables)}
        rescaled, redrawn = [], []
        rectified = _rectified_kernels(self.model)
        for seed, (name, kernel, drawn, usual) in enumerate(kernels(self.model)):
            if initial is None or drawn < INIT_RATIO * usual or id(kernel) not in index:
                continue
            i = index[id(kernel)]
            value = initial.values[i]
            recurrent = "recurrent" in (getattr(kernel, "path", None) or kernel.name)
            if not recurrent and abs(float(np.mean(value))) <= 0.5 * float(np.std(value)):
                initial.values[i] = value * np.float32(usual / drawn)
                rescaled.append(f"{name} x{usual / drawn:.2g}")
                continue
            if recurrent:
                default = keras.initializers.Orthogonal
            elif id(kernel) in rectified:
                default = keras.initializers.HeUniform
            else:
                default = keras.initializers.GlorotUniform
            fresh = default(seed=seed)(kernel.shape, dtype=kernel.dtype)
            initial.values[i] = keras.ops.convert_to_numpy(fresh)
            redrawn.append(f"{name} ({default.__name__})")
        if initial is None or not (rescaled or redrawn):
            return self._roll_back(recorder, incident, self._last_bad)
        self._restore(recorder, initial)
        incident.action, self._remedied = "rolled_back", True
        said = []
        if rescaled:
            said.append(f"kernels rescaled to the Glorot/He scale: {_listed(rescaled)}")
        if redrawn:
            said.append(f"kernels drawn afresh: {_listed(redrawn)}")
        return "rolled back to the initial weights with " + "; ".join(said)

    def _restore(self, recorder: Any, snapshot: Snapshot) -> None:
        self.snapshots.restore(snapshot)
        now = int(recorder.state.read_status()[st.STEP])
        recorder.undone.append((snapshot.step, now))
        self._watched_at = now  # the first look comes WATCH_EVERY steps on, past undone losses
        recorder.weights_bad = False  # an update that overflowed the weights is undone
        # The initial state has no level of its own: the run's starting loss stands for it, so
        # a run that diverges again at once is caught climbing from there.
        self._watched = snapshot.level if snapshot.level is not None else recorder.start_loss()

    def _backoff(self, incident: Incident, batch: Any) -> float:
        """The learning-rate factor of a heal: ``LR_BACKOFF``, except the first time inputs far
        from unit scale (RMS ``s``) are the cause: the loss's curvature grows as ``s**2``,
        so plain SGD needs ``1/s**2``; an adaptive optimizer's step is already normalized, so
        there the rate that moves pre-activations as on unit-scale data is ``1/s``."""
        if incident.root_cause != "unscaled_input" or self._scaled or batch is None:
            return LR_BACKOFF
        self._scaled = True
        import tensorflow as tf

        leaves = [np.asarray(leaf) for leaf in tf.nest.flatten(batch.x)]
        values = np.concatenate(
            [leaf[np.isfinite(leaf)].ravel() for leaf in leaves if leaf.dtype.kind == "f"]
            or [np.zeros(0)]
        )
        scale = float(np.sqrt(np.mean(np.square(values, dtype=np.float64)))) if values.size else 1
        inner = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        power = 2 if type(inner) is keras.optimizers.SGD else 1
        return min(LR_BACKOFF, scale**-power) if scale > 1 else LR_BACKOFF

    def _roll_back(
        self, recorder: Any, incident: Incident, before: int, backoff: float = LR_BACKOFF
    ) -> str:
        """Roll back to a snapshot from before global step ``before``, lower the learning rate
        by ``backoff``, clip gradients."""
        if self.rollbacks >= MAX_ROLLBACKS:
            self._halt(recorder)
            incident.action = "stopped"
            return f"{MAX_ROLLBACKS} rollbacks did not hold; stopped"
        self.rollbacks += 1
        self._rolled_at, self._rolled_for = recorder.executions, incident
        self._rolled_step = int(recorder.state.read_status()[st.STEP])
        snapshot = self.snapshots.choose(before, recorder.start_loss())
        controls = self.controls
        factor = float(controls.lr_factor.numpy()) * backoff
        controls.lr_factor.assign(np.float32(factor))
        said = []
        self._remedied = True
        if snapshot is not None:
            self._restore(recorder, snapshot)
            incident.action = "rolled_back"
            said.append(f"rolled back to the state before step {snapshot.step - recorder.start}")
        else:
            incident.action = "lr_reduced"
        said.append(f"learning rate x{factor:.3g} of its base from now on")
        clip = self._clip_norm(recorder, snapshot.step if snapshot is not None else before)
        if clip is not None:
            clip = min(clip, float(controls.clip_norm.numpy()))
            controls.clip_norm.assign(np.float32(clip))
            said.append(f"gradients clipped to a global norm of {clip:.3g}")
        return "; ".join(said) + f" (heal {self.rollbacks} of at most {MAX_ROLLBACKS})"

    def _skip_once(self, recorder: Any, incident: Incident) -> str:
        earlier = [step for cause, step in self.code_causes if cause == incident.root_cause]
        self.code_causes.append((incident.root_cause, incident.step))
        if not earlier:
            incident.action = "skipped"
            return "skipped this step; if it recurs the run stops, as only a code change fixes it"
        self._halt(recorder)
        incident.action = "stopped"
        return (
            f"recurred (first at step {earlier[0]}): only a code change fixes this (see the "
            "fix); stopped"
        )

    def _to_float32(self, incident: Incident) -> str:
        changed = 0
        for layer in [self.model, *self.model._flatten_layers(include_self=False)]:
            policy = getattr(layer, "dtype_policy", None)
            if policy is not None and policy.compute_dtype == "float16":
                layer.dtype_policy = "float32" if policy.variable_dtype == "float32" else policy
                changed += policy.variable_dtype == "float32"
        if not changed or self.retrace is None:
            return self._skip(incident, "no layer could be moved to float32")
        self.retrace()
        incident.action = "skipped"
        return f"skipped this step; {changed} layer(s) compute in float32 from the next step on"

    def _clip_norm(self, recorder: Any, upto: int) -> float | None:
        """``CLIP_HEADROOM`` times a global gradient norm that healthy steps rarely exceeded:
        the 90th percentile over the last 200 clean steps before global step ``upto`` whose loss
        stayed within twice the run's starting loss (or over all such steps, when a rollback to
        the start leaves fewer than 5 before it); with no starting loss yet, the first step's
        norm. Gradients legitimately grow as training leaves its start (embeddings from near
        zero): the clip bounds an explosion without braking normal steps."""
        rows = recorder.history.rows
        norms = np.sqrt(np.sum(np.square(rows["grad_norms"]), axis=1))
        ok = ((rows["flags"] & st.BAD) == 0) & np.isfinite(rows["loss"]) & np.isfinite(norms)
        start = recorder.start_loss()
        if start is None:
            return CLIP_HEADROOM * float(norms[ok][0]) if ok.any() else None
        ok &= rows["loss"] <= start + abs(start)
        before = ok & (rows["step"] < upto)
        pick = before if before.sum() >= 5 else ok
        return CLIP_HEADROOM * float(np.percentile(norms[pick][-200:], 90)) if pick.any() else None

    @staticmethod
    def _skip(incident: Incident, why: str) -> str:
        incident.action = "skipped"
        return f"{why}; skipped this step"

    # -- effects ---------------------------------------------------------------------------------

    def _halt(self, recorder: Any) -> None:
        """Stop the graph updating (as a ``stop`` does) and tell the recorder."""
        status = recorder.state.read_status()
        status[st.HALTED] = 1
        recorder.state.status.assign(status)
        recorder.status = status

    def _resume(self, recorder: Any) -> None:
        """Lift the pause the bad step put the graph in; after a remedy, the bad step no
        longer counts towards the run of bad steps the skip budget allows."""
        status = recorder.state.read_status()
        status[st.HALTED] = 0
        if self._remedied:
            status[st.CONSECUTIVE_BAD] = 0
        recorder.state.status.assign(status)
        recorder.status = status

    def _write_quarantine(self, incident: Incident, samples: list[int], batch: Any) -> None:
        """Append the quarantined records to ``quarantine_file`` (one JSON object per line)."""
        if self.quarantine_file is None:
            return
        record: dict[str, Any] = {
            "step": incident.step,
            "root_cause": incident.root_cause,
            "batch_positions": samples,
            "dataset_rows": incident.dataset_indices,
        }
        if batch is not None and samples:
            import tensorflow as tf

            record["inputs"] = [
                np.asarray(leaf)[samples].tolist() for leaf in tf.nest.flatten(batch.x)
            ]
        self.quarantine_file.parent.mkdir(parents=True, exist_ok=True)
        with self.quarantine_file.open("a") as out:
            out.write(json.dumps(record, allow_nan=True) + "\n")


def _listed(names: list[str]) -> str:
    return ", ".join(names[:4]) + (" ..." if len(names) > 4 else "")


def _record_prints(source: Any, incident: Incident, samples: list[int], batch: Any) -> Any:
    """Fingerprints of the offending records: the named samples of the kept batch, or when the
    batch holds none of them, the named rows of the training arrays."""
    if batch is not None and samples:
        return fingerprints(batch.x).numpy()[samples]
    rows = incident.dataset_indices
    if not rows or source is None:
        return None
    import tensorflow as tf

    leaves = tf.nest.flatten(source)
    if not all(hasattr(leaf, "shape") and len(leaf) > max(rows) for leaf in leaves):
        return None  # a tf.data pipeline or a generator: its rows cannot be taken back
    picked = tf.nest.map_structure(lambda leaf: np.asarray(leaf)[rows], source)
    return fingerprints(picked).numpy()


def _output_units(model: Any, batch: Any) -> int | None:
    """Classes the model's output has: its static shape, else one forward pass on a sample."""
    try:
        shape = model.output_shape
        if isinstance(shape, tuple) and shape and isinstance(shape[-1], int):
            return shape[-1]
    except (AttributeError, ValueError):
        pass
    if batch is None:
        return None
    import tensorflow as tf

    first = tf.nest.map_structure(lambda t: np.asarray(t)[:1], batch.x)
    return int(np.shape(model(first, training=False))[-1])


RECTIFIERS = {"relu", "relu6", "leaky_relu", "elu", "gelu", "silu"}


def _rectified_kernels(model: Any) -> set[int]:
    """Ids of the kernels of layers whose own activation is ReLU-like."""
    out = set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        activation, kernel = getattr(layer, "activation", None), getattr(layer, "kernel", None)
        if kernel is None or activation is None:
            continue
        name = getattr(activation, "__name__", None) or type(activation).__name__
        if name.lower() in RECTIFIERS:
            out.add(id(kernel))
    return out


def verdict(run: Run, first: float | None, final: float | None, start: float | None) -> str:
    """``healed`` when the run had incidents, completed, and its ``final`` loss is finite, below
    its ``first`` and no more than half above its ``start`` (the loss of its first steps): a
    first epoch that diverged is no yardstick on its own. Else the status it has."""
    if run.status != "completed" or not run.incidents or first is None or final is None:
        return run.status
    near_start = start is None or final <= start + 0.5 * abs(start)
    return "healed" if np.isfinite(final) and final < first and near_start else run.status
