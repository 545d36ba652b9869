"""Warn before the NaN: precursor monitors, pre-flight checks, ``lint`` and the LR range test.

Monitors read what the guard already records (per-step loss and gradient norms, sampled weight
norms and update ratios) on the host when it polls, and a forward pass over one kept batch now
and then for activation statistics; nothing is added to the training step itself.
"""
