"""Keep the offending batch for diagnosis, at no cost on healthy steps.

The batch is serialized (``tf.io.serialize_tensor``) into one string vector inside a ``tf.cond``
that only runs on a bad step whose capture slot is free. A string vector of varying length needs
no shape of its own, so batches of any structure, dtype and size fit; it is written outside the
XLA cluster (see :mod:`nanguard.guard.fit_patch`) because XLA cannot resize variables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from nanguard.probe.state import local_copies, per_replica_scope


@dataclass
class CapturedBatch:
    step: int
    replica: int
    replicas: int
    x: Any
    y: Any
    sample_weight: Any

    @property
    def size(self) -> int:
        """Samples in the batch (in this replica's share of it, under tf.distribute)."""
        first = next((v for v in tf.nest.flatten(self.x) if v is not None), None)
        return int(np.shape(first)[0]) if first is not None and np.ndim(first) else 0


class BatchCapture:
    def __init__(self) -> None:
        self.var: tf.Variable | None = None
        self.held: tf.Variable | None = None  # step of the held batch, -1 when the slot is free
        self._structure: Any = None
        self._dtypes: list[tf.DType | None] = []
        self._replicas = 1

    def prepare(self, strategy: tf.distribute.Strategy) -> None:
        """Create the slot: under ``MirroredStrategy`` one per replica, on its own device (see
        :func:`~nanguard.probe.state.per_replica_scope`), so that no replica pays a round trip
        to another device every step to check it."""
        if self.var is None:
            per_replica = {
                "trainable": False,
                "synchronization": tf.VariableSynchronization.ON_READ,
                "aggregation": tf.VariableAggregation.ONLY_FIRST_REPLICA,
            }
            with tf.init_scope(), per_replica_scope(strategy):
                self.var = tf.Variable(
                    tf.zeros([0], tf.string), shape=[None], name="nanguard_batch", **per_replica
                )
                self.held = tf.Variable(
                    tf.constant(-1, tf.int64), name="nanguard_held", **per_replica
                )

    def store(
        self, data: Any, bad: tf.Tensor, step: tf.Tensor, anywhere: tf.Tensor | None = None
    ) -> None:
        """Trace-time: write ``data`` when ``bad`` and nothing unread is held. ``anywhere``: the
        step was bad on some replica; across workers the whole global batch is kept then (see
        :meth:`_store_gathered`), otherwise this replica's share when it was bad here."""
        assert self.var is not None and self.held is not None
        # A hand-written loop may feed numpy arrays: they are kept like tensors.
        flat = [
            tf.convert_to_tensor(t) if isinstance(t, np.ndarray) else t
            for t in tf.nest.flatten(data)
        ]
        self._structure = tf.nest.map_structure(lambda _: 0, data)
        self._dtypes = [t.dtype if isinstance(t, tf.Tensor) else None for t in flat]
        replica = tf.distribute.get_replica_context()
        if anywhere is not None and _gatherable(replica, flat):
            self._replicas = 1
            replica.merge_call(self._store_gathered, args=(anywhere, step, *flat))
            return
        replica_id = replica.replica_id_in_sync_group if replica is not None else 0
        self._replicas = replica.num_replicas_in_sync if replica is not None else 1
        held = self.held

        def write() -> None:
            self._write(replica_id, flat, step)

        # Only a bad step pays for reading the slot.
        tf.cond(bad, lambda: tf.cond(held < 0, write, lambda: None), lambda: None)

    def _write(self, replica_id: Any, flat: list[Any], step: tf.Tensor) -> None:
        assert self.var is not None and self.held is not None
        self.held.assign(tf.cast(step, tf.int64))
        parts = [tf.io.serialize_tensor(tf.cast(replica_id, tf.int64))]
        parts += [
            tf.io.serialize_tensor(t if isinstance(t, tf.Tensor) else tf.zeros([0])) for t in flat
        ]
        self.var.assign(tf.stack(parts))

    def _store_gathered(self, distribution: Any, anywhere: Any, step: Any, *flat: Any) -> None:
        """Across workers, each host holds only its own shard of the batch, so the worker whose
        shard was clean could not name the offending sample: on a bad step every worker gathers
        the global batch (in replica order) and keeps it. Cross-replica (``merge_call``), like the
        guarded update, because the gather's collectives run inside a ``tf.cond``; they run on
        every bad step, whichever workers' slots are free, so that all workers meet in them."""
        assert self.held is not None
        held = self.held

        def first(value: Any) -> Any:
            return distribution.experimental_local_results(value)[0]

        def gather_and_write() -> None:
            batch = [
                distribution.gather(t, axis=0) if isinstance(t, tf.Tensor) else t for t in flat
            ]
            tf.cond(held < 0, lambda: self._write(0, batch, first(step)), lambda: None)

        tf.cond(first(anywhere), gather_and_write, lambda: None)

    def take(self) -> CapturedBatch | None:
        """Host: the held batch of the earliest step as numpy (or None), freeing its slot and
        any slot holding the same step (another replica's share of it)."""
        if self.held is None:
            return None
        slots = list(zip(local_copies(self.held), local_copies(self.var), strict=True))
        steps = [int(held.numpy()) for held, _ in slots]
        kept = [s for s in steps if s >= 0]
        if not kept:
            return None
        step = min(kept)
        parts = slots[steps.index(step)][1].numpy()
        for (held, _), s in zip(slots, steps, strict=True):
            if 0 <= s <= step:
                held.assign(-1)
        replica = int(tf.io.parse_tensor(parts[0], tf.int64))
        values = [
            None if dtype is None else np.asarray(tf.io.parse_tensor(raw, dtype))
            for raw, dtype in zip(parts[1:], self._dtypes, strict=True)
        ]
        data = tf.nest.pack_sequence_as(self._structure, values)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        return CapturedBatch(step, replica, self._replicas, x, y, sample_weight)


def _gatherable(replica: Any, flat: list[Any]) -> bool:
    """Several workers train, and every tensor of the batch can be gathered across them
    (numeric, with a batch dimension)."""
    if replica is None or not replica.strategy.extended._in_multi_worker_mode():
        return False
    tensors = [t for t in flat if isinstance(t, tf.Tensor)]
    return all(t.shape.rank and (t.dtype.is_floating or t.dtype.is_integer) for t in tensors)
