"""``streamlabel train`` that pauses after its Nth adaptation iteration and says so, for a test to kill -9 it there.

    python kill_target.py N [train arguments ...]

Nothing of the run is changed: the pause comes after the iteration finished (weights, banks, labels updated),
so a kill during it is a crash in the middle of an epoch.
"""

from __future__ import annotations

import sys
import time

from streamlabel.engine.trainer import Trainer
from streamlabel.launch import train

MARKER = "PAUSED-FOR-KILL"


def main(argv: list[str]) -> int:
    pause_after, rest = int(argv[0]), argv[1:]
    original = Trainer.run_step
    done = {"adapt": 0}

    def run_step(self: Trainer, *args, **kwargs):
        result = original(self, *args, **kwargs)
        phase = kwargs.get("phase", args[2] if len(args) > 2 else None)
        if phase.name == "adapt":
            done["adapt"] += 1
            if done["adapt"] == pause_after:
                print(f"{MARKER} after adaptation iteration {pause_after}", flush=True)
                time.sleep(600)
        return result

    Trainer.run_step = run_step
    return train.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
