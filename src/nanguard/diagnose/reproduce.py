"""``nanguard replay BUNDLE``: reproduce an incident offline and diagnose it again.

The bundle's model holds the weights the bad step started from, so recomputing the loss and the
gradients on the bundle's batch shows whether the step is still non-finite: on another machine,
with another nanguard, Keras or TensorFlow. The diagnosis runs first, on exactly the state the
guard diagnosed (the recomputation runs the model in training mode, which may move statistics
such as batch normalization's), then the step is recomputed.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from nanguard.contract import Incident, Run, _clean
from nanguard.diagnose.bundle import Bundle, BundleError, load_bundle
from nanguard.runscript import UsageError

COMPARED = ("root_cause", "layer", "op", "samples")


@dataclass
class Outcome:
    """What recomputing the step on the bundle's batch gave."""

    reproduced: bool
    detail: str
    loss: float | None = None
    nonfinite_gradients: list[str] = field(default_factory=list)
    weights_finite_after_update: bool | None = None
    error: str | None = None


def replay_command(
    bundle_dir: str,
    *,
    custom_objects: str | None = None,
    json_path: str | None = None,
    out: IO[str] | None = None,
) -> int:
    """0: the step is non-finite (or raises) again; 1: it is not (finite on replay, or it cannot
    be recomputed: no model, no loss); 2: bad usage or an unreadable bundle."""
    out = out or sys.stdout
    if custom_objects is not None and not Path(custom_objects).is_file():
        raise UsageError(f"nanguard replay: {custom_objects}: no such file")
    import keras

    policy = keras.config.dtype_policy()
    try:
        return _replay(bundle_dir, custom_objects, json_path, out)
    finally:
        keras.config.set_dtype_policy(policy)  # the bundle's, set while loading it


def _replay(
    bundle_dir: str, custom_objects: str | None, json_path: str | None, out: IO[str]
) -> int:
    try:
        bundle = load_bundle(bundle_dir, custom_objects=custom_objects)
    except BundleError as exc:
        raise UsageError(f"nanguard replay: {exc}") from exc
    incident, run = rediagnose(bundle)
    try:
        outcome = recompute(bundle)
    except Exception as exc:  # whatever the model does, the answer is a verdict, not a traceback
        outcome = Outcome(False, f"the replay failed: {type(exc).__name__}: {exc}"[:300])
    incident.evidence.append(f"replayed offline: {outcome.detail}")
    recorded = bundle.info["incident"]
    differences = _differences(recorded, incident)

    from nanguard.render.terminal import print_incident

    print_incident(run, incident, file=out)
    verdict = "reproduced" if outcome.reproduced else "NOT reproduced"
    print(f"nanguard replay: {verdict}: {outcome.detail}", file=out)
    if differences:
        print("nanguard replay: the diagnosis differs: " + "; ".join(differences), file=out)
    else:
        shown = ", ".join(f"{key} {_shown(recorded.get(key))}" for key in COMPARED)
        print(f"nanguard replay: the diagnosis matches the recorded one ({shown})", file=out)
    if json_path:
        result = {
            "bundle": str(bundle.path),
            "reproduced": outcome.reproduced,
            "replay": dataclasses.asdict(outcome),
            "diagnosis_matches": not differences,
            "differences": differences,
            "incident": dataclasses.asdict(incident),
            "recorded": recorded,
        }
        try:
            target = Path(json_path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(_clean(result), indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"nanguard replay: {json_path}: cannot write ({exc})") from exc
    return 0 if outcome.reproduced else 1


def rediagnose(bundle: Bundle) -> tuple[Incident, Run]:
    """Run today's diagnosis on the bundle: the incident card it gives, and its run."""
    from nanguard.diagnose import triage

    info, recorded = bundle.info, bundle.info["incident"]
    facts = triage.Facts(
        step=int(info["step"]),
        flags=int(info["flags"]),
        batch=bundle.batch,
        history=bundle.history,
        model=bundle.model,
        error=_recorded_error(info.get("error")),
        **_optional(loss=bundle.loss, source=bundle.source, variable_names=bundle.variable_names),
    )
    began = time.perf_counter()
    try:
        found = triage.diagnose(facts)
    except Exception as exc:
        found = triage.Diagnosis(evidence=[f"diagnosis failed: {type(exc).__name__}: {exc}"])
    incident = found.incident(
        step=recorded["step"],
        epoch=recorded.get("epoch"),
        batch=recorded.get("batch"),
        symptom=recorded["symptom"],
        action=recorded.get("action", "none"),
        kept=bundle.batch,
        rows_of=lambda samples: _rows(bundle, samples, recorded),
        began=began,
    )
    about = info.get("run") or {}
    run = Run(
        kind=about.get("kind", "fit"),
        model=about.get("model") or getattr(bundle.model, "name", "model"),
        policy=about.get("policy", "stop"),
    )
    return incident, run


def _optional(**values: Any) -> dict[str, Any]:
    """Those of ``values`` that today's ``triage.Facts`` has a field for."""
    from nanguard.diagnose import triage

    known = {item.name for item in dataclasses.fields(triage.Facts)}
    return {key: value for key, value in values.items() if key in known}


def _rows(bundle: Bundle, samples: list[int], recorded: dict[str, Any]) -> list[int] | None:
    """Dataset rows of the samples: from the kept training inputs, else as recorded when the
    samples are the recorded ones."""
    if bundle.source is not None and bundle.batch is not None:
        from nanguard.diagnose.rows import dataset_rows

        return dataset_rows(bundle.source, bundle.batch.x, samples)
    return recorded.get("dataset_indices") if samples == recorded.get("samples") else None


def _recorded_error(error: dict[str, str] | None) -> BaseException | None:
    """The error the step raised, as recorded: same type name and message for the rules."""
    if not error:
        return None
    kind = type(str(error.get("type") or "Error"), (Exception,), {})
    return kind(str(error.get("message", "")))


def recompute(bundle: Bundle) -> Outcome:
    """Recompute the step eagerly: forward in training mode, the compiled loss, the gradients;
    when those are finite, the optimizer's update, and whether it leaves the weights finite."""
    model, batch = bundle.model, bundle.batch
    if model is None:
        why = bundle.info.get("model_missing") or "the bundle has no model"
        return Outcome(False, f"cannot recompute the step: {why}")
    if batch is None or batch.x is None:
        return Outcome(False, "cannot recompute the step: the guard did not keep its batch")
    import tensorflow as tf

    compiled = getattr(model, "loss", None) is not None
    if not compiled and bundle.loss is None:  # a hand-written loss in a hand-written loop
        if not _finite(model(batch.x, training=True)):
            return Outcome(True, "the model's outputs are non-finite (the loop's loss is unknown)")
        return Outcome(
            False,
            "the model's outputs are finite; the loop's loss (hand-written) is unknown, so the "
            "rest of the step cannot be recomputed",
        )

    names = bundle.variable_names
    variables = model.trainable_variables
    optimizer = getattr(model, "optimizer", None)
    try:
        with tf.GradientTape() as tape:
            y_pred = model(batch.x, training=True)
            if compiled:
                loss = model.compute_loss(
                    x=batch.x,
                    y=batch.y,
                    y_pred=y_pred,
                    sample_weight=batch.sample_weight,
                    training=True,
                )
            else:  # a hand-written loop: the Keras loss it called
                loss = _loop_loss(bundle.loss, batch.y, y_pred, batch.sample_weight)
            scaled = optimizer.scale_loss(loss) if optimizer is not None else loss
        grads = tape.gradient(scaled, variables)
    except Exception as exc:
        from nanguard.diagnose.triage import error_summary

        message = f"{type(exc).__name__}: {error_summary(exc)[0]}"[:300]
        # Unguarded, an out-of-range label raises on CPU: that is the fault, reproduced.
        flags = bundle.info.get("flag_names") or []
        expected = bundle.info.get("error") or "LABEL_OUT_OF_RANGE" in flags
        if expected:
            return Outcome(True, f"the step raises again ({message})", error=message)
        return Outcome(False, f"the replay raised {message}", error=message)
    value = float(np.asarray(loss, dtype=np.float64))
    bad = [
        names[i] if i < len(names) else variable.path
        for i, (grad, variable) in enumerate(zip(grads, variables, strict=True))
        if grad is not None and not _finite(grad)
    ]
    if not np.isfinite(value) or bad:
        parts = [f"the loss is {value:g}"]
        if bad:
            parts.append(f"the gradient of {len(bad)} of {len(variables)} variables is non-finite")
        return Outcome(True, "; ".join(parts), loss=value, nonfinite_gradients=bad)
    if optimizer is None:
        return Outcome(False, f"the loss ({value:g}) and every gradient are finite", loss=value)
    try:
        optimizer.apply(grads, variables)
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"[:300]
        return Outcome(False, f"the loss ({value:g}) and every gradient are finite; {message}")
    finite = all(_finite(v) for v in variables)
    detail = f"the loss ({value:g}) and every gradient are finite" + (
        ", and so are the weights after the update"
        if finite
        else ", but the update makes the weights non-finite"
    )
    return Outcome(not finite, detail, loss=value, weights_finite_after_update=finite)


def _finite(value: Any) -> bool:
    import tensorflow as tf

    if isinstance(value, tf.IndexedSlices):  # the gradient of an embedding lookup
        value = value.values
    return all(
        bool(tf.reduce_all(tf.math.is_finite(tf.convert_to_tensor(v))))
        for v in tf.nest.flatten(value)
        if tf.as_dtype(getattr(v, "dtype", tf.float32)).is_floating
    )


def _loop_loss(loss: Any, y: Any, y_pred: Any, sample_weight: Any) -> Any:
    import keras

    if isinstance(loss, keras.losses.Loss):
        return loss(y, y_pred, sample_weight=sample_weight)
    return keras.ops.mean(loss(y, y_pred))


def _differences(recorded: dict[str, Any], incident: Incident) -> list[str]:
    out = []
    for key in COMPARED:
        now, then = getattr(incident, key), recorded.get(key)
        if now != then:
            out.append(f"{key} {_shown(now)} (recorded: {_shown(then)})")
    return out


def _shown(value: Any) -> str:
    if value is None or value == []:
        return "-"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value[:10])) + (" ...]" if len(value) > 10 else "]")
    return str(value)
