"""Per-process policy state of a sharded bank, saved beside the main checkpoint.

With ``policy.bank: sharded`` each bank row lives on one process only, so the main process cannot write
the policy state alone. Every process writes its own with the same atomic save
(``checkpoints/shards/rank<r>/<name>``), and only then does the main process write the main checkpoint
``checkpoints/<name>``. Resume reads the shard of the very name the latest main checkpoint has, so a
crash between the two writes leaves the previous complete set in use.
"""

from __future__ import annotations

from pathlib import Path

from streamlabel.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

SHARDS_DIR = "shards"


def shard_path(main: Path, rank: int) -> Path:
    """Where process ``rank`` keeps its policy state for the main checkpoint ``main``."""
    return main.parent / SHARDS_DIR / f"rank{rank}" / main.name


def save_policy_shard(main: Path, policy_state: dict, *, rank: int, world: int, fingerprint: str) -> Path:
    """Atomically write this process's policy state for the main checkpoint ``main`` (three kept per rank)."""
    state = {"policy": policy_state, "rank": rank, "world": world}
    return save_checkpoint(shard_path(main, rank), state, fingerprint=fingerprint, keep=3)


def load_policy_shard(main: Path, *, rank: int, world: int, saved_world: int, fingerprint: str) -> dict:
    """This process's policy state for ``main``; a clear CheckpointError when the world size differs from the
    run that wrote it or the shard file is missing."""
    if saved_world != world:
        raise CheckpointError(
            f"checkpoint {main} was written by {saved_world} process(es) with policy.bank: sharded (one policy "
            f"shard per process); this run has {world}: resume with --num_processes {saved_world}")
    path = shard_path(main, rank)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {main} needs the policy shard of process {rank}, {path}, which is missing (every process "
            "of a sharded run writes its own: copy the whole checkpoints/ folder)")
    state = load_checkpoint(path, fingerprint=fingerprint)
    if (state.get("rank"), state.get("world")) != (rank, world):
        raise CheckpointError(f"{path} holds the shard of process {state.get('rank')} of {state.get('world')}, "
                              f"not of process {rank} of {world}")
    return state["policy"]
