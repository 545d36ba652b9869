"""Each sample's own loss: which rows of a batch made the loss non-finite.

Keras losses reduce over the batch; their ``call`` does not. A loss that reduces over the batch
itself (a hand-written function returning a scalar) is evaluated one sample at a time.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np


def per_sample_loss(
    model: keras.Model, loss: Any, y: Any, y_pred: Any
) -> tuple[str | None, np.ndarray | None]:
    """(loss name, its unreduced values) for a single-output loss; (name, None) otherwise."""
    loss = loss if loss is not None else getattr(model, "loss", None)
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    name = getattr(loss, "name", None) or getattr(loss, "__name__", None)
    if loss is None or y is None or isinstance(y, list | tuple | dict):
        return name, None
    if isinstance(y_pred, list | tuple | dict):
        return name, None
    if not isinstance(loss, keras.losses.Loss):  # a plain function: align ranks as fit does
        from keras.src.losses.losses import LossFunctionWrapper

        loss = LossFunctionWrapper(loss)
    y_true = keras.ops.convert_to_tensor(y)
    numpy = keras.ops.convert_to_numpy
    try:
        arr = np.asarray(numpy(loss.call(y_true, y_pred)), dtype=np.float64)
        if arr.ndim == 0:
            # A loss that reduces over the batch itself: one sample at a time instead.
            arr = np.array(
                [
                    numpy(loss.call(y_true[i : i + 1], y_pred[i : i + 1])).sum()
                    for i in range(int(y_true.shape[0]))
                ],
                dtype=np.float64,
            )
    except Exception:  # a loss that needs more than (y, y_pred): no per-sample view
        return name, None
    return name, arr.reshape(arr.shape[0], -1).sum(axis=1)
