"""The graph side of ``policy="heal"``: what the guarded step reads, and the host sets to heal.

Healing must not retrace the train function (a retrace mid-``fit`` costs seconds, and a traced
graph never sees a Python-side change), so everything a heal can change is a variable built
before the first trace, with a value that changes nothing until the host sets it:

- ``lr_factor`` (1): multiplies the optimizer's learning rate inside the update only, so that
  whatever sets the base rate (a schedule, ``ReduceLROnPlateau``, ``LearningRateScheduler``)
  keeps doing so and the factor applies on top;
- ``clip_norm`` (inf): the global gradient norm the update is clipped to;
- quarantine rules, applied to each batch before the model sees it: drop samples with a
  non-finite input, target or weight; samples whose class label is outside ``[0, limit)``; and
  samples whose fingerprint (two random projections and the squared norm of the sample's
  inputs) matches a quarantined record. While no rule is on, the batch passes a ``tf.cond``
  untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from nanguard.probe.state import guard_variable, local_copies

CAPACITY = 4096  # quarantined records held by fingerprint
_TOLERANCE = 1e-4  # relative: a fingerprint computed eagerly and in graph agrees far closer
# Slots of the rules vector.
NONFINITE, LABEL_LIMIT, PRINTS = range(3)


def fingerprints(x: Any) -> tf.Tensor:
    """``[batch, 3]``: two fixed random projections of each sample's inputs, and its squared
    norm, in float64 (a fill value of 1e36 squared stays finite). The same op eagerly (host, on
    a kept batch) and in the step gives the same numbers."""
    leaves = [tf.convert_to_tensor(t) for t in tf.nest.flatten(x) if t is not None]
    total = tf.zeros([tf.shape(leaves[0])[0], 3], tf.float64)
    for i, leaf in enumerate(leaves):
        flat = tf.reshape(tf.cast(leaf, tf.float64), [tf.shape(leaf)[0], -1])
        weights = tf.random.stateless_uniform(
            [tf.shape(flat)[1], 2], seed=[i, 7], minval=-1.0, maxval=1.0, dtype=tf.float64
        )
        squares = tf.reduce_sum(tf.square(flat), axis=1, keepdims=True)
        total += tf.concat([tf.matmul(flat, weights), squares], axis=1)
    return total


class HealControls:
    """The variables one guarded optimizer's heal policy reads in graph; see the module doc.
    Built with the probe's own state (outside any trace, in the strategy's scope)."""

    def __init__(self) -> None:
        self.lr_factor = guard_variable(np.float32(1.0), "lr_factor")
        self.clip_norm = guard_variable(np.float32(np.inf), "clip_norm")
        self.rules = guard_variable(np.zeros(3, np.int64), "rules")
        self.prints = guard_variable(np.zeros((CAPACITY, 3), np.float64), "prints")
        self.counts = guard_variable(np.zeros(2, np.int64), "quarantine_counts")  # seen, dropped
        self.filtering = False  # a train step was traced with the quarantine filter

    # -- host side -----------------------------------------------------------------------------

    def drop_nonfinite(self) -> None:
        self._set_rule(NONFINITE, 1)

    def limit_labels(self, classes: int) -> None:
        self._set_rule(LABEL_LIMIT, classes)

    def quarantine(self, prints: np.ndarray) -> int:
        """Add records by fingerprint; returns how many fit (the table holds ``CAPACITY``)."""
        held = int(self.rules.numpy()[PRINTS])
        new = np.asarray(prints, np.float64)
        new = new[np.isfinite(new).all(axis=1)][: CAPACITY - held]  # non-finite never matches
        if len(new):
            table = self.prints.numpy()
            table[held : held + len(new)] = new
            self.prints.assign(table)
            self._set_rule(PRINTS, held + len(new))
        return len(new)

    def quarantine_counts(self) -> tuple[int, int]:
        """(samples offered, samples dropped) since a quarantine rule first came on, summed over
        the replicas (each counts its own share of the batch in its own copy)."""
        seen, dropped = np.sum([c.numpy() for c in local_copies(self.counts)], axis=0).tolist()
        return int(seen), int(dropped)

    def _set_rule(self, slot: int, value: int) -> None:
        rules = self.rules.numpy()
        rules[slot] = value
        self.rules.assign(rules)

    # -- graph side ----------------------------------------------------------------------------

    def filter_batch(self, data: Any) -> tuple[Any, Any]:
        """(the batch with quarantined samples masked out, whether none is left): trace-time.

        A quarantined sample is zeroed (inputs and targets) and weighted 0 rather than removed,
        so that the batch keeps its static shape: a shape the ``tf.cond`` left unknown would
        slow every step (recurrent layers most). Without sample weights of its own the batch
        then carries weights of 1, which change no loss. With several outputs, a sample is only
        zeroed (Keras takes one weight per output there). A batch that is not dense batched
        tensors (ragged, sparse, scalars) passes as is.
        """
        x, y, weight = keras.utils.unpack_x_y_sample_weight(data)
        xs, ys = tf.nest.flatten(x), tf.nest.flatten(y) if y is not None else []
        tensors = [t for t in [*xs, *ys, *tf.nest.flatten(weight)] if t is not None]
        if not tensors or not all(isinstance(t, tf.Tensor) and t.shape.rank for t in tensors):
            return data, None
        weighted = len(ys) <= 1 and len(tf.nest.flatten(weight)) <= 1
        size = tf.shape(tensors[0])[0]
        if weighted and weight is None:
            weight = tf.ones([size], tf.float32)
        rules = self.rules.read_value()
        self.filtering = True

        def masked() -> tuple[list[Any], tf.Tensor]:
            keep = self._finite(tensors, rules) & self._labelled(y, rules) & ~self._known(x, rules)
            left = tf.reduce_sum(tf.cast(keep, tf.int64))
            self.counts.assign_add(
                tf.stack([tf.cast(size, tf.int64), tf.cast(size, tf.int64) - left])
            )
            out = [_zeroed(t, keep) for t in [*xs, *ys]]
            if weighted:
                out.append(weight * tf.cast(keep, weight.dtype))
            return out, tf.equal(left, 0)

        def untouched() -> tuple[list[Any], tf.Tensor]:
            return [*xs, *ys, *([weight] if weighted else [])], tf.constant(False)

        out, empty = tf.cond(tf.reduce_any(rules > 0), masked, untouched)
        new_x = tf.nest.pack_sequence_as(x, out[: len(xs)])
        new_y = tf.nest.pack_sequence_as(y, out[len(xs) : len(xs) + len(ys)]) if ys else y
        new_weight = out[-1] if weighted else weight
        return keras.utils.pack_x_y_sample_weight(new_x, new_y, new_weight), empty

    @staticmethod
    def _finite(tensors: Sequence[tf.Tensor], rules: tf.Tensor) -> tf.Tensor:
        size = tf.shape(tensors[0])[0]
        finite = tf.ones([size], tf.bool)
        for t in tensors:
            if t.dtype.is_floating:
                flat = tf.reshape(t, [size, -1])
                finite &= tf.reduce_all(tf.math.is_finite(flat), axis=1)
        return finite | (rules[NONFINITE] == 0)

    @staticmethod
    def _labelled(y: Any, rules: tf.Tensor) -> tf.Tensor:
        if not isinstance(y, tf.Tensor) or not y.shape.rank:
            return tf.constant(True)
        labels = tf.reshape(tf.cast(y, tf.float64), [tf.shape(y)[0], -1])
        limit = tf.cast(rules[LABEL_LIMIT], tf.float64)
        inside = tf.reduce_all((labels >= 0) & (labels < limit), axis=1)
        return inside | (rules[LABEL_LIMIT] == 0)

    def _known(self, x: Any, rules: tf.Tensor) -> tf.Tensor:
        """Samples whose fingerprint is in the quarantine table."""

        def match() -> tf.Tensor:
            mine = fingerprints(x)[:, None, :]
            table = self.prints[: rules[PRINTS]][None, :, :]
            scale = tf.sqrt(table[..., 2]) + 1e-6
            close = tf.abs(mine - table) <= _TOLERANCE * tf.stack([scale, scale, scale**2], -1)
            return tf.reduce_any(tf.reduce_all(close, axis=-1), axis=1)

        size = tf.shape(tf.nest.flatten(x)[0])[0]
        return tf.cond(rules[PRINTS] > 0, match, lambda: tf.zeros([size], tf.bool))

    def clip(self, grads: list[Any], half_squares: tf.Tensor) -> list[Any]:
        """Gradients scaled to a global norm of at most ``clip_norm`` (``half_squares``: each
        gradient's summed squares over 2, already measured by the probe). The scale is finite
        in [0, 1] whatever the norm (inf when the squares overflow), so finite gradients stay
        finite."""
        norm = tf.sqrt(2.0 * tf.reduce_sum(half_squares))
        scale = tf.where(norm > self.clip_norm, self.clip_norm / norm, 1.0)
        return [_scaled(g, scale) for g in grads]

    @contextlib.contextmanager
    def scaled_learning_rate(self, optimizer: Any) -> Iterator[None]:
        """While an update is traced (or run eagerly), the learning rate it reads is the base
        rate times ``lr_factor``; outside it, ``optimizer.learning_rate`` is the base rate."""
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        base = inner._get_current_learning_rate
        factor = self.lr_factor

        def scaled() -> Any:
            rate = base()
            return rate * tf.cast(factor, getattr(rate, "dtype", tf.float32))

        inner._get_current_learning_rate = scaled
        try:
            yield
        finally:
            inner.__dict__.pop("_get_current_learning_rate", None)


def _zeroed(t: tf.Tensor, keep: tf.Tensor) -> tf.Tensor:
    """``t`` with the samples not kept set to 0 (a NaN among them gone too)."""
    shape = tf.concat([tf.shape(keep), tf.ones([t.shape.rank - 1], tf.int32)], 0)
    return tf.where(tf.reshape(keep, shape), t, tf.zeros_like(t))


def _scaled(grad: Any, scale: tf.Tensor) -> Any:
    if grad is None:
        return None
    if isinstance(grad, tf.IndexedSlices):
        return tf.IndexedSlices(
            grad.values * tf.cast(scale, grad.values.dtype), grad.indices, grad.dense_shape
        )
    return grad * tf.cast(scale, grad.dtype)
