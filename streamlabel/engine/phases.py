"""The two training phases as one table: what each does, read by the loop instead of testing names.

A run is the source-only warm-up (``PRETRAIN``, ``train.pretrain_iterations``), then adaptation
(``ADAPT``, ``train.iterations``), in the order of ``PHASES``. ``Phase.name`` is written into
checkpoint file names and their ``"phase"`` field: it must never change (resume reads it back).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Phase:
    """What a phase's steps and epochs do."""

    name: str  # checkpoint file prefix and "phase" field
    iterations_key: str  # the phase lasts ``train.<iterations_key>`` batches
    # target batches drawn from the policy's labels, the target loss, the policy's state saved
    uses_target: bool
    updates_policy: bool  # ``policy.step`` after each batch, ``policy.epoch_end`` after each epoch
    steps_scheduler: bool  # the lr scheduler steps (its milestones count adaptation iterations)


PRETRAIN = Phase("pretrain", "pretrain_iterations", uses_target=False, updates_policy=False,
                 steps_scheduler=False)
ADAPT = Phase("adapt", "iterations", uses_target=True, updates_policy=True, steps_scheduler=True)
PHASES = (PRETRAIN, ADAPT)  # in the order a run goes through them


def phase_named(name: str) -> Phase:
    """The phase a checkpoint's ``"phase"`` field names."""
    for phase in PHASES:
        if phase.name == name:
            return phase
    names = [phase.name for phase in PHASES]
    raise ValueError(f"unknown training phase {name!r}; expected one of {names}")


__all__ = ["ADAPT", "PHASES", "PRETRAIN", "Phase", "phase_named"]
