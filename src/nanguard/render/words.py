"""Plain words for the report's codes, shared by the terminal card and the HTML page."""

from __future__ import annotations

from typing import Any

SYMPTOM = {
    "nonfinite_loss": "the loss became non-finite",
    "nonfinite_gradient": "a gradient became non-finite",
    "nonfinite_weights": "the updated weights became non-finite",
    "error": "training raised an error",
}

ACTION = {
    "stopped": "training stopped; the weights are as they were before this step",
    "skipped": "the batch was skipped; training went on",
    "quarantined": "the offending samples were quarantined; training went on",
    "rolled_back": "the weights were rolled back to a finite checkpoint",
    "lr_reduced": "the learning rate was reduced; training went on",
    "clipped": "gradients were clipped; training went on",
    "none": "no action",
}

CAUSE = {
    "input_nonfinite": "the model inputs already contain NaN/Inf (a bad record, 0/0 in "
    "preprocessing)",
    "target_nonfinite": "the targets contain NaN/Inf",
    "label_out_of_range": "class labels outside [0, num_classes)",
    "invalid_target": "targets outside the loss's domain (negative counts, BCE targets outside "
    "[0, 1], ...)",
    "input_outlier": "a few extreme samples drive the blow-up",
    "unscaled_input": "inputs/targets far from unit scale drive the blow-up",
    "output_loss_mismatch": "the output activation does not fit the loss (relu/linear into "
    "cross-entropy or poisson, softmax on one unit, from_logits mismatch)",
    "unstable_loss": "the loss function itself computes log(0), 0/0, ...",
    "unstable_op": "a layer's forward computation overflows or leaves its domain",
    "unstable_gradient": "the forward pass is finite but a layer's backward pass is not",
    "exploding_gradients": "gradient norms grew over steps until they overflowed",
    "learning_rate_too_high": "updates too large for the loss surface: divergence",
    "float16_overflow": "a float16 value passed 65504 under mixed precision",
    "bad_initialization": "initial weights at a scale that blows up activations",
    "unknown": "none of the known causes fits the evidence",
}


def where(step: int, epoch: int | None, batch: int | None) -> str:
    if epoch is not None:
        return f"step {step} (epoch {epoch}, batch {batch})"
    return f"step {step}"


HEALED = "heal: "  # evidence lines that say what the heal policy did


def action_text(incident: Any) -> str:
    """What nanguard did: what ``heal`` says it did, else the action in words. A step is
    blocked before its update, except when the update itself made the weights non-finite."""
    said = [e[len(HEALED) :] for e in incident.evidence if e.startswith(HEALED)]
    if said:
        return "; ".join(said)
    if incident.symptom == "nonfinite_weights" and incident.action in ("stopped", "none"):
        applied = "the update that made the weights non-finite was already applied"
        return f"training stopped; {applied}" if incident.action == "stopped" else applied
    return ACTION.get(incident.action, incident.action)


def facts(incident: Any) -> list[str]:
    """The incident's evidence, without the lines saying what ``heal`` did."""
    return [e for e in incident.evidence if not e.startswith(HEALED)]
