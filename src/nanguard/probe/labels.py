"""Class labels checked against the output units before the loss op sees them.

A sparse categorical cross-entropy given a label outside ``[0, num_classes)`` raises on CPU and
silently returns NaN on GPU or under XLA. The guard checks labels in graph first, makes them
safe for the loss op (the step is skipped anyway) and flags the step; ``fit`` does it in its
``compute_loss``, hand-written loops in the Keras loss they call.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf


def check_labels(y: tf.Tensor, y_pred: tf.Tensor, ignore_class: int | None) -> tuple[Any, Any]:
    """(labels made safe for the loss op, whether any was outside ``[0, units)``).

    Runs every step, so the common case (integer labels, no ``ignore_class``) is a min, a max
    and a clip; unsafe labels are clipped into range (the step is skipped anyway).
    """
    # The static width where known: a dynamic ``tf.shape`` would keep alive an output op that
    # the loss itself bypasses (Keras computes a softmax output's cross-entropy from its logits,
    # and the unused softmax is pruned): it cost ~4% of the 5 ms MLP step of
    # benchmarks/distributed_overhead.py.
    width = y_pred.shape[-1]
    units = tf.cast(tf.shape(y_pred)[-1] if width is None else width, y.dtype)
    if ignore_class is None and not y.dtype.is_floating:
        bad = (tf.reduce_min(y) < 0) | (tf.reduce_max(y) >= units)
        return tf.clip_by_value(y, tf.zeros_like(units), units - 1), bad
    finite = tf.math.is_finite(y) if y.dtype.is_floating else tf.ones_like(y, tf.bool)
    labels = tf.where(finite, y, tf.zeros_like(y))
    outside = (labels < 0) | (labels >= units) | ~finite
    if ignore_class is not None:
        outside = outside & tf.not_equal(labels, tf.cast(ignore_class, y.dtype))
    return tf.where(outside, tf.zeros_like(y), y), tf.reduce_any(outside)
