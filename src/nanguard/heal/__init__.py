"""The ``heal`` policy: keep a run alive and converging after a NaN (see :mod:`.healer`)."""
