"""Repro bundles: one folder per incident with what it takes to replay it offline.

Written while the incident is handled, when the model in memory still holds the weights the bad
step started from (the guard skipped its update):

- ``model.keras``: the model as Keras saves it (architecture, compile config, optimizer state);
- ``batch.npz``: the offending batch, the structure of x / y / sample_weight kept (arrays, lists,
  tuples, dicts), described by the JSON string ``__structure__``;
- ``history.npz``: the probe rows of the steps before it (loss, flags, gradient norms, sampled
  weight norms and update ratios) and the variable names;
- ``source.npz``: the training inputs given to ``fit`` (first input, one flat row per sample),
  when known and under 32 MiB, for the rules that read the whole data and for dataset rows;
- ``incident.json``: the incident as in the report, the step's flags, the global dtype policy,
  versions, what is missing;
- ``custom_objects.py``: the source of custom objects defined in the script (see
  :mod:`nanguard.diagnose.custom_source`).

``nanguard replay BUNDLE`` (:mod:`nanguard.diagnose.reproduce`) loads it back. Writing is bounded
(a few bundles per run and per folder) so that a NaN storm cannot fill the disk.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nanguard.contract import ACTIONS, SYMPTOMS, Incident, Run, _clean, package_version

FORMAT = 1
MAX_PER_RUN = 3  # bundles of one guarded run: the first incidents are the informative ones
MAX_PER_FOLDER = 20  # bundles in one folder, whatever the number of runs writing there
MAX_SOURCE_BYTES = 32 * 2**20  # training inputs kept in a bundle up to this size
_SKIPPED_FACTS = {"step", "flags", "batch", "history", "model", "error", "loss", "source"}

_warned: set[str] = set()


class BundleError(Exception):
    """A bundle that cannot be read: the message names the path and what is wrong."""


@dataclass
class Bundle:
    path: Path
    info: dict[str, Any]  # incident.json
    model: Any  # keras.Model, or None when the bundle has none
    batch: Any  # CapturedBatch, or None
    history: dict[str, np.ndarray]
    variable_names: list[str]
    loss: Any = None  # the Keras loss of a hand-written loop, when it was saved
    source: np.ndarray | None = None  # the training inputs, one flat row per sample, if kept


# -- writing --------------------------------------------------------------------------------------


def bundle_incident(recorder: Any, facts: Any, incident: Incident) -> Path | None:
    """Write the bundle of an incident for a :class:`RunRecorder` with a ``bundle_dir``.

    Bounded and never raising: the guard must not break the run it protects. The folder is
    ``<bundle_dir>/step-<step>`` (``-2``, ``-3`` ... when several runs share the folder).
    """
    root = Path(recorder.bundle_dir)
    if len(recorder.bundles) >= MAX_PER_RUN:
        return None
    try:
        if root.is_dir() and sum(1 for p in root.iterdir() if p.is_dir()) >= MAX_PER_FOLDER:
            _warn_once("full", f"nanguard: {root} holds {MAX_PER_FOLDER} bundles; writing no more")
            return None
        directory = root / f"step-{incident.step}"
        suffix = 1
        while directory.exists():
            suffix += 1
            directory = root / f"step-{incident.step}-{suffix}"
        from nanguard.probe import state

        # Under ``skip`` the run may have applied updates before the host saw the incident.
        rows = recorder.history.rows
        after = (rows["step"] > facts.batch.step) if facts.batch is not None else rows["step"] < 0
        applied_after = bool(np.any((rows["flags"][after] & state.BAD) == 0))
        write_bundle(
            directory,
            model=recorder.model,
            batch=facts.batch,
            facts=facts,
            incident=incident,
            run=recorder.run,
            variable_names=recorder.history.variable_names,
            weights_exact=not applied_after,
        )
    except Exception as exc:  # a full disk, an unwritable folder ...
        _warn_once("write", f"nanguard: cannot write a repro bundle in {root} ({exc})")
        return None
    recorder.bundles[incident.step] = directory
    return directory


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        print(message, file=sys.stderr)


def write_bundle(
    directory: str | Path,
    *,
    model: Any,
    batch: Any,
    facts: Any,
    incident: Incident,
    run: Run | None = None,
    variable_names: list[str] | None = None,
    weights_exact: bool = True,
) -> Path:
    """Write one incident's bundle into ``directory`` (created); returns it.

    A model Keras cannot save does not stop the rest: it is reported once on stderr and
    ``incident.json`` says why the model is missing.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_info = _save_model(directory, model, getattr(facts, "loss", None))
    if batch is not None:
        _save_batch(directory / "batch.npz", batch)
    source = _save_source(directory / "source.npz", getattr(facts, "source", None))
    history = dict(facts.history or {})
    np.savez(
        directory / "history.npz",
        variable_names=np.array(list(variable_names or []), dtype=str),
        **history,
    )
    error = facts.error
    info = {
        "format": FORMAT,
        "versions": _versions(),
        "dtype_policy": _global_policy(),
        "run": None if run is None else _run_info(run),
        "step": facts.step,
        "global_step": None if batch is None else int(batch.step),
        "flags": int(facts.flags),
        "flag_names": _flag_names(int(facts.flags)),
        "symptom": incident.symptom,
        "error": None
        if error is None
        else {"type": type(error).__name__, "message": _error_text(error)[:20_000]},
        "weights": "pre-step"
        if weights_exact
        else "later: updates were applied after the bad step before the host saw it",
        **model_info,
        "batch": "batch.npz" if batch is not None else None,
        "history": "history.npz",
        "source": source,
        "facts": _simple_facts(facts),
        "incident": _clean(dataclasses.asdict(incident)),
    }
    (directory / "incident.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return directory


def _run_info(run: Run) -> dict[str, str]:
    return {"kind": run.kind, "model": run.model, "policy": run.policy}


def _versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    return {
        "nanguard": package_version(),
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _global_policy() -> str:
    import keras

    return keras.config.dtype_policy().name


def _flag_names(flags: int) -> list[str]:
    from nanguard.probe import state

    names = (
        "LOSS_NONFINITE",
        "GRAD_NONFINITE",
        "WEIGHT_NONFINITE",
        "LABEL_OUT_OF_RANGE",
        "SCALER_SKIP",
        "SCALER_STUCK",
    )
    return [name for name in names if flags & getattr(state, name)]


def _error_text(error: BaseException) -> str:
    return getattr(error, "message", None) or str(error)


def _simple_facts(facts: Any) -> dict[str, Any]:
    """The other fields of ``triage.Facts`` that JSON can hold (for the record)."""
    out = {}
    for item in dataclasses.fields(facts):
        if item.name in _SKIPPED_FACTS or item.name.startswith("_"):
            continue
        value = getattr(facts, item.name)
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            continue
        out[item.name] = value
    return out


def _save_model(directory: Path, model: Any, loss: Any) -> dict[str, Any]:
    """Save ``model.keras`` and ``custom_objects.py``; what ``incident.json`` says of them.

    ``loss``: the Keras loss a hand-written loop called (a model trained that way has no
    compiled loss), saved as its Keras config under ``loop_loss``.
    """
    missing = {"model": None, "custom_objects": {}, "custom_objects_file": None}
    if model is None:
        return {**missing, "model_missing": "no Keras model is known for this training loop"}
    path = directory / "model.keras"
    try:
        model.save(path)
    except Exception as exc:
        path.unlink(missing_ok=True)
        said = " ".join(str(exc).split())[:300] or type(exc).__name__
        reason = f"Keras cannot save {type(model).__name__} '{model.name}': {said}"
        _warn_once(
            f"save:{model.name}",
            f"nanguard: the repro bundle has no model ({reason}); batch and history are kept",
        )
        return {**missing, "model_missing": reason}
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    loop_loss = _loss_config(loss)
    return {
        "model": "model.keras",
        "model_missing": None,
        "model_class": type(model).__name__,
        "loop_loss": loop_loss,
        **_custom_objects(directory, [config, loop_loss], model, loss),
    }


def _loss_config(loss: Any) -> Any:
    if loss is None:
        return None
    import keras

    try:
        config = keras.saving.serialize_keras_object(loss)
        json.dumps(config, allow_nan=False)
    except Exception:  # a loss Keras cannot describe: the replay goes without it
        return None
    return config


def _custom_objects(directory: Path, configs: list[Any], model: Any, loss: Any) -> dict[str, Any]:
    from nanguard.diagnose import custom_source

    names = custom_source.custom_names(configs)
    if not names:
        return {"custom_objects": {}, "custom_objects_file": None}
    live = custom_source.live_objects(model, loss)
    main = vars(sys.modules["__main__"]) if "__main__" in sys.modules else {}
    objects, unresolved = [], []
    for attr in dict.fromkeys(names.values()):
        obj = live.get(attr, main.get(attr))
        if obj is None:
            unresolved.append(attr)
        elif custom_source.needs_source(obj):
            objects.append(obj)
    info: dict[str, Any] = {"custom_objects": names, "custom_objects_file": None}
    if objects:
        text, missing = custom_source.write_source(objects)
        (directory / "custom_objects.py").write_text(text, encoding="utf-8")
        info["custom_objects_file"] = "custom_objects.py"
        script = custom_source.source_file(objects[0])
        info["script_dir"] = str(Path(script).resolve().parent) if script else None
        unresolved += missing
    info["custom_objects_without_source"] = unresolved
    return info


def _save_source(path: Path, source: Any) -> str | None:
    """The inputs the user trains on (first input, one flat row per sample), when small: the
    rules that read the whole data (extreme records, dataset rows) then work offline too."""
    if source is None:
        return None
    from nanguard.diagnose.rows import source_inputs

    try:
        data = source_inputs(source)
    except Exception as exc:  # a pipeline that cannot be read back: the bundle goes without it
        return f"not kept: {type(exc).__name__}: {exc}"[:300]
    if data is None:
        return None
    if data.nbytes > MAX_SOURCE_BYTES:
        return f"not kept: {data.nbytes / 1e6:.0f} MB, over {MAX_SOURCE_BYTES / 1e6:.0f} MB"
    np.savez(path, inputs=data)
    return path.name


def _save_batch(path: Path, batch: Any) -> None:
    arrays: dict[str, np.ndarray] = {}
    structure = {
        "step": int(batch.step),
        "replica": int(batch.replica),
        "replicas": int(batch.replicas),
        "x": _flatten(batch.x, arrays),
        "y": _flatten(batch.y, arrays),
        "sample_weight": _flatten(batch.sample_weight, arrays),
    }
    np.savez(path, __structure__=np.array(json.dumps(structure)), **arrays)


def _flatten(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """JSON description of a nested value; its arrays go into ``arrays`` under ``a<n>`` keys."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {"dict": [[key, _flatten(item, arrays)] for key, item in value.items()]}
    if isinstance(value, list | tuple):
        kind = "list" if isinstance(value, list) else "tuple"
        return {kind: [_flatten(item, arrays) for item in value]}
    key = f"a{len(arrays)}"
    array = np.asarray(value)
    if array.dtype == object:  # string tensors come back as arrays of bytes objects
        array = array.astype(bytes)
    arrays[key] = array
    return key


def _unflatten(spec: Any, arrays: Any) -> Any:
    if spec is None:
        return None
    if isinstance(spec, str):
        return arrays[spec]
    if "dict" in spec:
        return {key: _unflatten(item, arrays) for key, item in spec["dict"]}
    if "list" in spec:
        return [_unflatten(item, arrays) for item in spec["list"]]
    return tuple(_unflatten(item, arrays) for item in spec["tuple"])


# -- reading --------------------------------------------------------------------------------------


def read_info(directory: str | Path) -> dict[str, Any]:
    """``incident.json`` of a bundle; :class:`BundleError` naming the path if unreadable."""
    path = Path(directory)
    if not path.is_dir():
        raise BundleError(f"{path}: not a bundle folder")
    file = path / "incident.json"
    try:
        info = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BundleError(f"{file}: missing (not a nanguard bundle?)") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{file}: unreadable ({exc})") from exc
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise BundleError(f"{file}: not a nanguard bundle of format {FORMAT}")
    incident = info.get("incident")
    if not (
        isinstance(info.get("step"), int)
        and isinstance(info.get("flags"), int)
        and isinstance(incident, dict)
        and isinstance(incident.get("step"), int)
        and incident.get("symptom") in SYMPTOMS
        and incident.get("action", "none") in ACTIONS
    ):
        raise BundleError(f"{file}: incomplete (step, flags or the incident are missing)")
    return info


def load_bundle(directory: str | Path, *, custom_objects: str | Path | None = None) -> Bundle:
    """Load a bundle: model (custom objects from the bundle's ``custom_objects.py`` or the given
    file), batch and history. Raises :class:`BundleError` naming the file that fails."""
    path = Path(directory)
    info = read_info(path)
    import keras

    # The run's global dtype policy (mixed_float16 ...): models load and replay as they trained.
    # Left set, as the replay runs after loading; ``nanguard replay`` restores it at the end.
    policy = info.get("dtype_policy")
    if policy:
        keras.config.set_dtype_policy(policy)
    batch = _load_batch(path / info["batch"]) if info.get("batch") else None
    history, names = _load_history(path / info.get("history", "history.npz"))
    model = loss = None
    if info.get("model"):
        extra = custom_objects or (
            path / info["custom_objects_file"] if info.get("custom_objects_file") else None
        )
        if custom_objects is None and extra is not None and not Path(extra).is_file():
            names = ", ".join(sorted(info.get("custom_objects") or {}))
            raise BundleError(f"{extra}: missing; pass --custom-objects FILE.py defining {names}")
        objects = _custom_objects_of(info, extra)
        model = _load_model(path / info["model"], objects, extra)
        loss = _load_loss(info.get("loop_loss"), objects, path / "incident.json", extra)
    source = None
    if str(info.get("source") or "").endswith(".npz"):
        file = path / info["source"]
        try:
            with np.load(file, allow_pickle=False) as data:
                source = data["inputs"]
        except Exception as exc:
            raise BundleError(f"{file}: unreadable ({type(exc).__name__}: {exc})") from exc
    return Bundle(path, info, model, batch, history, names, loss, source)


def _load_batch(file: Path) -> Any:
    from nanguard.probe.capture import CapturedBatch

    try:
        with np.load(file, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        spec = json.loads(str(arrays.pop("__structure__")))
        return CapturedBatch(
            step=int(spec["step"]),
            replica=int(spec["replica"]),
            replicas=int(spec["replicas"]),
            x=_unflatten(spec["x"], arrays),
            y=_unflatten(spec["y"], arrays),
            sample_weight=_unflatten(spec["sample_weight"], arrays),
        )
    except Exception as exc:
        raise BundleError(f"{file}: unreadable batch ({type(exc).__name__}: {exc})") from exc


def _load_history(file: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    try:
        with np.load(file, allow_pickle=False) as data:
            history = {key: data[key] for key in data.files}
    except Exception as exc:
        raise BundleError(f"{file}: unreadable history ({type(exc).__name__}: {exc})") from exc
    names = [str(name) for name in history.pop("variable_names", [])]
    return history, names


def import_file(file: str | Path) -> Any:
    """Import a Python file as a module named for it (never ``__main__``)."""
    import importlib.util

    file = Path(file)
    name = f"nanguard_custom_{abs(hash(str(file.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise BundleError(f"{file}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except FileNotFoundError as exc:
        del sys.modules[name]
        raise BundleError(f"{file}: no such file") from exc
    except Exception as exc:
        del sys.modules[name]
        raise BundleError(f"{file}: cannot import ({type(exc).__name__}: {exc})") from exc
    return module


def _custom_objects_of(info: dict[str, Any], extra: str | Path | None) -> dict[str, Any]:
    """What ``custom_objects`` Keras gets: the public callables of ``extra``, also under the
    names the saved config uses for them."""
    if extra is None:
        return {}
    script_dir = info.get("script_dir")
    added = bool(script_dir) and Path(script_dir).is_dir() and script_dir not in sys.path
    if added:
        sys.path.insert(0, script_dir)  # the script's local imports, if still there
    try:
        module = import_file(extra)
    finally:
        if added:
            sys.path.remove(script_dir)
    objects = {k: v for k, v in vars(module).items() if callable(v) and not k.startswith("_")}
    for saved_as, attr in (info.get("custom_objects") or {}).items():
        if attr in objects:
            objects[saved_as] = objects[attr]
    return objects


def _load_model(file: Path, objects: dict[str, Any], extra: str | Path | None) -> Any:
    import keras

    try:
        return keras.saving.load_model(file, custom_objects=objects, compile=True, safe_mode=False)
    except Exception as exc:
        raise BundleError(f"{file}: cannot load the model ({_said(exc)}){_hint(extra)}") from exc


def _load_loss(config: Any, objects: dict[str, Any], where: Path, extra: Any) -> Any:
    if config is None:
        return None
    import keras

    try:
        return keras.saving.deserialize_keras_object(config, custom_objects=objects)
    except Exception as exc:
        raise BundleError(
            f"{where}: cannot load the loop's loss ({_said(exc)}){_hint(extra)}"
        ) from exc


def _said(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _hint(extra: str | Path | None) -> str:
    return "" if extra is not None else "; pass --custom-objects FILE.py defining them"
