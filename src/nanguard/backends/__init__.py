"""Guards for Keras' JAX and PyTorch backends (TensorFlow's is :mod:`nanguard.probe`).

``nanguard.Guard`` asks :func:`backend_guard` when it is made: on TensorFlow the answer is None
and the Guard runs as it always did; on JAX and PyTorch a :class:`~nanguard.backends.host.HostGuard`
takes over its training hooks, with the backend's engine blocking bad updates inside the step.
Nothing here imports TensorFlow. What these backends lack is the TensorFlow replay: incidents
there are diagnosed from their batch only (:mod:`nanguard.backends.diagnosis`).
"""

from __future__ import annotations

from typing import Any

import keras

from nanguard.backends.budget import Limits

__all__ = ["Limits", "backend_guard"]


def backend_guard(guard: Any, policy: str) -> Any:
    """Bind the guard of Keras' backend to ``guard`` (a ``nanguard.Guard``); None on TensorFlow."""
    name = keras.backend.backend()
    if name == "tensorflow":
        return None
    if policy == "heal":
        raise ValueError(
            f"policy 'heal' needs the TensorFlow backend (Keras runs on {name}); "
            "use 'stop' or 'skip', or set KERAS_BACKEND=tensorflow"
        )
    if name == "jax":
        from nanguard.backends.jax import JaxEngine as engine_class
    elif name == "torch":
        from nanguard.backends.torch import TorchEngine as engine_class
    else:
        raise ValueError(f"nanguard guards the tensorflow, jax and torch backends, not {name}")
    from nanguard.backends.host import HostGuard

    host = HostGuard(guard, engine_class(), name)
    host.bind()
    return host
