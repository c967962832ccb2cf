"""Sample records shared by every parser: one image = (path, pid, camid)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class ReidSample:
    """One image: absolute ``path``, identity ``pid`` (-1 = junk, ignored in evaluation), 0-based camid."""

    path: str
    pid: int
    camid: int


@dataclass
class ReidDataset:
    """The three splits of a re-ID dataset; ``train`` pids are dense 0..P-1, query/gallery keep raw ids."""

    name: str
    train: list[ReidSample] = field(default_factory=list)
    query: list[ReidSample] = field(default_factory=list)
    gallery: list[ReidSample] = field(default_factory=list)

    @property
    def num_train_pids(self) -> int:
        """Number of distinct identities (pid >= 0) in ``train``."""
        return len({s.pid for s in self.train if s.pid >= 0})

    @property
    def num_train_cams(self) -> int:
        """Number of distinct cameras in ``train``."""
        return len({s.camid for s in self.train})

    def summary(self) -> str:
        """A small table (split, ids, images, cameras) for logs."""
        rows = [f"dataset {self.name}", f"  {'split':<8}{'ids':>8}{'images':>9}{'cams':>6}"]
        for split, samples in (("train", self.train), ("query", self.query), ("gallery", self.gallery)):
            ids = len({s.pid for s in samples if s.pid >= 0})
            cams = len({s.camid for s in samples})
            rows.append(f"  {split:<8}{ids:>8}{len(samples):>9}{cams:>6}")
        return "\n".join(rows)


def relabel(samples: Sequence[ReidSample]) -> list[ReidSample]:
    """Map the pids of ``samples`` (all >= 0) to dense 0..P-1 in increasing order of the raw pid."""
    raw = sorted({s.pid for s in samples})
    if raw and raw[0] < 0:
        raise ValueError("relabel expects no negative (junk) pids; drop them first")
    new_id = {pid: i for i, pid in enumerate(raw)}
    return [replace(s, pid=new_id[s.pid]) for s in samples]


def reverse_direction(dataset: ReidDataset) -> ReidDataset:
    """The same dataset with query and gallery swapped (e.g. camera B -> camera A retrieval)."""
    return ReidDataset(
        name=f"{dataset.name}_reversed",
        train=list(dataset.train),
        query=list(dataset.gallery),
        gallery=list(dataset.query),
    )
