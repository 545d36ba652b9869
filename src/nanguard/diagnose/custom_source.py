"""Source of the custom objects a model needs, for models defined in a script.

Keras saves a custom layer, model, loss or activation by name only; loading it again needs the
Python object. Objects defined in the user's script live in ``__main__``, which no later process
can import, so a repro bundle carries their source, read from the file that defines them, with
the helpers and simple constants they use from the same module, the common imports and the
script's own module-level imports, in the script's order.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import sys
import textwrap
import types
from typing import Any

COMMENT = """\
# Custom objects of the model in this bundle, copied from the script that trained it.
# `nanguard replay` imports this file (as a module, not as __main__) to load model.keras.
"""
HEADER = """\
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops
"""

_SIMPLE = (int, float, str, bool, bytes, type(None))


def custom_names(config: Any) -> dict[str, str]:
    """Names under which a saved model's config refers to non-Keras objects, mapped to the
    plain Python name (``"Custom>Scale"`` -> ``"Scale"``; functions by their name)."""
    found: dict[str, str] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            module = node.get("module")
            outside = module is None or not str(module).startswith("keras")
            if node.get("class_name") == "function" and isinstance(node.get("config"), str):
                if outside:
                    found[node["config"]] = node["config"]
            elif outside and isinstance(node.get("class_name"), str) and "config" in node:
                name = node.get("registered_name") or node["class_name"]
                found[name] = name.split(">")[-1]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found


def live_objects(model: Any, loss: Any = None) -> dict[str, Any]:
    """Classes and functions reachable from the model (its class, layers, their attributes, the
    compiled loss) and from ``loss``, by name: how objects defined inside a function, or in a
    script that has finished, are found."""
    found: dict[str, Any] = {}

    def add(obj: Any) -> None:
        if isinstance(obj, type):
            for cls in obj.__mro__:
                if not _from_library(cls):
                    found.setdefault(cls.__name__, cls)
        elif isinstance(obj, types.FunctionType) and not _from_library(obj):
            found.setdefault(obj.__name__, obj)

    layers = model._flatten_layers(include_self=True, recursive=True)
    for layer in layers:
        add(type(layer))
        for value in vars(layer).values():
            add(value if isinstance(value, types.FunctionType) else type(value))
    compiled = getattr(model, "loss", None)
    if isinstance(compiled, dict):
        compiled = list(compiled.values())
    for item in [loss, *(compiled if isinstance(compiled, list | tuple) else [compiled])]:
        add(item if isinstance(item, types.FunctionType) else type(item))
    return found


def _from_library(obj: Any) -> bool:
    module = getattr(obj, "__module__", "") or ""
    return module.split(".")[0] in ("keras", "tensorflow", "builtins", "numpy", "nanguard")


def needs_source(obj: Any) -> bool:
    """Whether a later process could not import ``obj`` from its module."""
    module = getattr(obj, "__module__", None)
    if module in (None, "__main__"):
        return True
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


def write_source(objects: list[Any]) -> tuple[str, list[str]]:
    """(text of ``custom_objects.py``, names whose source could not be read)."""
    missing: list[str] = []
    pieces: dict[int, tuple[int, str]] = {}  # id -> (line in its file, source)
    constants: dict[str, str] = {}
    imports: list[str] = []
    todo = list(objects)
    while todo:
        obj = todo.pop()
        if id(obj) in pieces:
            continue
        file, scope = _located(obj)
        found = _source(obj, file)
        if found is None:
            missing.append(getattr(obj, "__name__", repr(obj)))
            continue
        pieces[id(obj)] = found
        for name in sorted(_names_used(obj) & scope.keys()):
            value = scope[name]
            if isinstance(value, type | types.FunctionType) and value.__module__ == obj.__module__:
                todo.append(value)
            elif isinstance(value, _SIMPLE) and not name.startswith("__"):
                constants[name] = f"{name} = {value!r}"
        for statement in _script_imports(file):
            if statement not in imports:
                imports.append(statement)
    ordered = [source for _, source in sorted(pieces.values(), key=lambda piece: piece[0])]
    future = [s for s in imports if s.startswith("from __future__")]
    parts = [COMMENT + "\n".join(future), HEADER, *(s for s in imports if s not in future)]
    if constants:
        parts.append("\n".join(constants[name] for name in sorted(constants)) + "\n")
    parts += ordered
    return "\n\n".join(part.rstrip("\n") for part in parts) + "\n", missing


def source_file(obj: Any) -> str | None:
    """The file that defines ``obj``."""
    return _located(obj)[0]


def _functions(obj: Any) -> list[types.FunctionType]:
    """A function itself; a class's own methods (static, class methods, properties too)."""
    if isinstance(obj, types.FunctionType):
        return [obj]
    found = []
    for value in vars(obj).values() if isinstance(obj, type) else []:
        func = value.__func__ if isinstance(value, staticmethod | classmethod) else value
        func = func.fget if isinstance(func, property) else func
        if isinstance(func, types.FunctionType):
            found.append(func)
    return found


def _located(obj: Any) -> tuple[str | None, dict[str, Any]]:
    """(defining file, module globals), from the code itself: once ``runpy`` has finished a
    script, ``sys.modules["__main__"]`` is no longer the script, but its functions still know
    their file and globals."""
    functions = _functions(obj)
    if functions:
        return functions[0].__code__.co_filename, functions[0].__globals__
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    try:
        return inspect.getsourcefile(obj), vars(module) if module is not None else {}
    except TypeError:
        return None, {}


def _source(obj: Any, file: str | None) -> tuple[int, str] | None:
    """(first line, dedented source) of a function or class."""
    functions = _functions(obj)
    if isinstance(obj, type) and functions and file:
        method_line = functions[0].__code__.co_firstlineno
        try:
            with open(file, encoding="utf-8") as handle:
                text = handle.read()
            tree = ast.parse(text)
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            return None
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ClassDef)
                and node.name == obj.__name__
                and node.lineno <= method_line <= (node.end_lineno or 0)
            ):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = text.splitlines(keepends=True)[first - 1 : node.end_lineno]
                return first, textwrap.dedent("".join(lines))
        return None
    try:
        lines, first = inspect.getsourcelines(obj)
    except (OSError, TypeError):
        return None
    return first, textwrap.dedent("".join(lines))


def _names_used(obj: Any) -> set[str]:
    """Global names read by a function's code, or by the methods and base classes of a class."""
    names = {base.__name__ for base in obj.__bases__} if isinstance(obj, type) else set()
    codes = [func.__code__ for func in _functions(obj)]
    while codes:
        code = codes.pop()
        names.update(code.co_names)
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return names


def _script_imports(path: str | None) -> list[str]:
    """The module-level import statements of a file, each guarded against ImportError (a local
    helper module may be missing where the bundle is replayed)."""
    if not path:
        return []
    try:
        with open(path, encoding="utf-8") as handle:
            source = handle.read()
        tree = ast.parse(source)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    found = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            found.append(ast.get_source_segment(source, node) or "")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            text = ast.get_source_segment(source, node) or ""
            if text not in HEADER.splitlines():
                found.append(f"try:\n    {text}\nexcept ImportError:\n    pass")
    return found
