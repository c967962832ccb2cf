"""Synthetic re-ID domains: procedurally drawn pedestrians seen by several cameras, in two domains.

``SyntheticReid`` builds a domain in memory (uint8 images + pids/camids + train/query/gallery split)
for fast tests; ``write_synthetic_market`` writes the same images in Market-1501 layout so they go
through the real parser; ``preview_grid`` draws identities x cameras for a quick look.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from .owned_files import ForeignFilesError, Manifest, describe_foreign, probe_writable, read_json_meta
from .registry import register_dataset
from .samples import ReidDataset
from .synthetic_params import domain_style, gather, sample_cameras, sample_identities, sample_shots
from .synthetic_render import render_images

SPLITS = ("train", "query", "gallery")
MARKET_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
META_FILE = "synthetic.json"
META_FORMAT = "streamlabel-synthetic-v2"  # v2: lists every file written with its SHA-256


# bounds of the sizes (Market-1501 has 1,501 ids and 6 cameras, MSMT17 4,101 ids and 15 cameras)
SIZE_BOUNDS = {"num_train_ids": (1, 100_000), "num_test_ids": (1, 100_000), "num_cams": (2, 100),
               "images_per_cam": (1, 1_000), "height": (8, 4096), "width": (8, 4096)}
MAX_IMAGES = 5_000_000  # images of one synthetic domain (Market-1501 has 32,668)


def check_synthetic_sizes(**sizes: float) -> None:
    """Refuse (ValueError, naming the key and its bounds) sizes no synthetic domain is built with: an
    unknown key, a non-integer count, a count outside :data:`SIZE_BOUNDS`, a domain over
    :data:`MAX_IMAGES` images; checked before anything is rendered or written."""
    for key, value in sizes.items():
        if key == "cam_coverage":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise ValueError(f"synthetic size cam_coverage must be a number in (0, 1], got {value!r}")
            continue
        if key not in SIZE_BOUNDS:
            raise ValueError(f"unknown synthetic size {key!r} (sizes: {', '.join([*SIZE_BOUNDS, 'cam_coverage'])})")
        low, high = SIZE_BOUNDS[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"synthetic size {key} must be in [{low:,}, {high:,}] (an integer), got {value!r}")
    ids = sizes.get("num_train_ids", 100) + 2 * sizes.get("num_test_ids", 50)
    images = ids * sizes.get("num_cams", 4) * sizes.get("images_per_cam", 4)
    if images > MAX_IMAGES:
        raise ValueError(f"synthetic sizes would make about {images:,} images ((num_train_ids + 2 x num_test_ids) x "
                         f"num_cams x images_per_cam); at most {MAX_IMAGES:,}")


@dataclass(frozen=True)
class SyntheticSplit:
    """One split: ``images`` uint8 [N,3,H,W], raw ``pids`` (1-based) and 0-based ``camids``, both [N]."""

    images: torch.Tensor
    pids: torch.Tensor
    camids: torch.Tensor

    def __len__(self) -> int:
        return int(self.pids.numel())


def _plan(
    seed: int,
    domain: str,
    num_train_ids: int,
    num_test_ids: int,
    num_cams: int,
    images_per_cam: int,
    cam_coverage: float,
) -> dict[str, np.ndarray]:
    """Who is seen by which camera how often, and which split each image lands in (one row per image)."""
    if num_train_ids < 1 or num_test_ids < 0 or num_cams < 2 or images_per_cam < 1:
        raise ValueError("need num_train_ids >= 1, num_test_ids >= 0, num_cams >= 2, images_per_cam >= 1")
    rng = np.random.default_rng([seed, domain_style(domain).code, 0])
    total = num_train_ids + num_test_ids
    is_test = np.zeros(total, dtype=bool)
    is_test[rng.permutation(total)[num_train_ids:]] = True  # train and test ids interleave, as in Market
    frame = rng.integers(0, 500, num_cams)
    rows: dict[str, list[int]] = {k: [] for k in ("identity", "cam", "shot", "split", "seq", "frame")}
    for ident in range(total):
        seen = rng.random(num_cams) < cam_coverage
        while seen.sum() < 2:  # every identity crosses at least two cameras
            seen[rng.integers(num_cams)] = True
        counts = rng.integers(max(2, images_per_cam - 2), images_per_cam + 3, num_cams)
        for cam in np.flatnonzero(seen):
            seq = int(rng.integers(1, 7))
            for shot in range(int(counts[cam])):
                frame[cam] += rng.integers(5, 200)
                split = (1 if shot == 0 else 2) if is_test[ident] else 0  # one query per (test id, camera)
                for key, value in zip(rows, (ident, cam, shot, split, seq, frame[cam]), strict=True):
                    rows[key].append(int(value))
    return {key: np.array(value, dtype=np.int64) for key, value in rows.items()}


def _render(
    seed: int,
    domain: str,
    identity: np.ndarray,
    cam: np.ndarray,
    shots: list[tuple[int, int, int]],
    num_cams: int,
    height: int,
    width: int,
) -> np.ndarray:
    """Render images for rows (identity, cam); ``shots`` lists (identity, cam, count) runs in row order."""
    code = domain_style(domain).code
    people = sample_identities(seed, domain, range(int(identity.max()) + 1))
    cameras = sample_cameras(seed, domain, num_cams)
    shot_rows = [sample_shots(seed, domain, i, c, n, cameras) for i, c, n in shots]
    params = gather(people, identity) | gather(cameras, cam)
    params |= {key: np.concatenate([s[key] for s in shot_rows]) for key in shot_rows[0]}
    return render_images(params, height, width, np.random.default_rng([seed, code, 4]))


def _runs(identity: np.ndarray, cam: np.ndarray) -> list[tuple[int, int, int]]:
    """Consecutive (identity, cam, count) runs of the image rows."""
    key = identity * 1_000_003 + cam
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], len(key)]
    return [(int(identity[s]), int(cam[s]), int(e - s)) for s, e in zip(starts, ends, strict=True)]


class SyntheticReid:
    """A synthetic domain in memory: ``images`` uint8 [N,3,H,W], ``pids``, ``camids`` (0-based), ``split``.

    ``split`` holds 0/1/2 for train/query/gallery; ``train``/``query``/``gallery`` give the subsets.
    Pids are raw, 1-based, and train ids are disjoint from test ids. ``images_per_cam`` is the mean
    number of shots of an identity in a camera that sees it (each camera sees it with ``cam_coverage``).
    """

    def __init__(
        self,
        domain: str = "source",
        seed: int = 0,
        num_train_ids: int = 100,
        num_test_ids: int = 50,
        num_cams: int = 4,
        images_per_cam: int = 4,
        height: int = 64,
        width: int = 32,
        cam_coverage: float = 0.8,
    ) -> None:
        check_synthetic_sizes(num_train_ids=num_train_ids, num_test_ids=num_test_ids, num_cams=num_cams,
                              images_per_cam=images_per_cam, height=height, width=width, cam_coverage=cam_coverage)
        self.domain, self.seed, self.num_cams = domain, seed, num_cams
        plan = _plan(seed, domain, num_train_ids, num_test_ids, num_cams, images_per_cam, cam_coverage)
        pixels = _render(
            seed,
            domain,
            plan["identity"],
            plan["cam"],
            _runs(plan["identity"], plan["cam"]),
            num_cams,
            height,
            width,
        )
        self.images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
        self.pids = torch.from_numpy(plan["identity"] + 1)
        self.camids = torch.from_numpy(plan["cam"])
        self.split = torch.from_numpy(plan["split"])
        self.names = [
            f"{i + 1:04d}_c{c + 1}s{s}_{f:06d}_{n + 1:02d}.jpg"
            for i, c, s, f, n in zip(
                plan["identity"], plan["cam"], plan["seq"], plan["frame"], plan["shot"], strict=True
            )
        ]

    def __len__(self) -> int:
        return int(self.pids.numel())

    def subset(self, split: str) -> SyntheticSplit:
        """The ``split`` ("train", "query" or "gallery") as tensors."""
        mask = self.split == SPLITS.index(split)
        return SyntheticSplit(self.images[mask], self.pids[mask], self.camids[mask])

    @property
    def train(self) -> SyntheticSplit:
        return self.subset("train")

    @property
    def query(self) -> SyntheticSplit:
        return self.subset("query")

    @property
    def gallery(self) -> SyntheticSplit:
        return self.subset("gallery")


def write_synthetic_market(
    root: str | Path,
    seed: int = 0,
    domain: str = "source",
    overwrite: bool = False,
    quality: int = 95,
    **sizes: int,
) -> dict:
    """Write one synthetic domain under ``root`` in Market-1501 layout; returns counts for logs.

    ``sizes`` go to ``SyntheticReid`` (num_train_ids, num_test_ids, num_cams, images_per_cam, height,
    width). ``root`` must be new, empty, or hold a synthetic dataset this function wrote (its
    ``synthetic.json`` lists every file with its SHA-256). ``overwrite`` replaces such an earlier dataset,
    deleting only the files the manifest proves ours; anything else in the way stops the write before a
    byte changes (:class:`ForeignFilesError`, naming the files).
    """
    root = Path(root)
    folders = {split: root / name for split, name in MARKET_FOLDERS.items()}
    manifest = check_synthetic_root(root, overwrite)
    data = SyntheticReid(domain=domain, seed=seed, **sizes)  # bad sizes fail here, before any file changes
    manifest.remove_written(list(folders.values()))
    pixels = data.images.permute(0, 2, 3, 1).numpy()
    manifest.make_folder(root)
    for split, folder in folders.items():
        manifest.make_folder(folder)
        for index in torch.nonzero(data.split == SPLITS.index(split)).flatten().tolist():
            encoded = io.BytesIO()
            Image.fromarray(pixels[index]).save(encoded, format="JPEG", quality=quality)
            manifest.write_file(folder / data.names[index], encoded.getvalue())
    counts = {split: int((data.split == k).sum()) for k, split in enumerate(SPLITS)}
    summary = {
        "root": str(root),
        "domain": domain,
        "seed": seed,
        "images": len(data),
        **counts,
        "train_ids": int(data.pids[data.split == 0].unique().numel()),
        "test_ids": int(data.pids[data.split > 0].unique().numel()),
        "cameras": data.num_cams,
        "sizes": sizes,
    }
    meta = {"format": META_FORMAT, **summary, "written": manifest.to_json()}
    scratch = root / f".{META_FILE}.{os.getpid()}.tmp"
    scratch.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(scratch, root / META_FILE)
    return summary


def read_meta(root: Path) -> tuple[dict, Manifest | None]:
    """``synthetic.json`` of ``root`` and its file manifest; ({}, None) when there is none or it is not ours."""
    meta = read_json_meta(root / META_FILE)
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        return {}, None
    return meta, Manifest.from_json(root, meta.get("written"))


def check_synthetic_root(root: str | Path, overwrite: bool = True) -> Manifest:
    """Refuse, before any work, a root the synthetic dataset could not be written into without touching
    files streamlabel did not write (:class:`ForeignFilesError`), a folder there that cannot be written in
    (PermissionError), or, without ``overwrite``, one holding a synthetic dataset already; a new, empty or
    streamlabel-written root passes, and its manifest is returned."""
    root = Path(root).expanduser()
    folders = [root / name for name in MARKET_FOLDERS.values()]
    manifest = _manifest_or_refuse(root, folders)
    probe_writable([root, *folders])
    if manifest.files and not overwrite:
        raise ForeignFilesError(f"{root} already holds a synthetic dataset; pass overwrite=True (--overwrite) to "
                                f"replace it, or choose another folder")
    return manifest


def _manifest_or_refuse(root: Path, folders: list[Path]) -> Manifest:
    """The manifest of what streamlabel wrote under ``root`` (empty for a new or empty folder); stops with
    :class:`ForeignFilesError` when ``root`` holds anything streamlabel cannot prove it wrote."""
    if root.exists() and not root.is_dir():
        raise ForeignFilesError(f"synthetic dataset root {root} is a file, not a folder")
    _meta, manifest = read_meta(root)
    way_out = ("streamlabel never clears a folder it did not write; give the synthetic dataset a new or "
               "empty folder (data.<source|target>.root=... or synth --out ...)")
    if manifest is None:
        present = sorted(root.iterdir()) if root.is_dir() else []
        if present:
            raise ForeignFilesError(f"{root} is not empty and holds no synthetic dataset streamlabel wrote "
                                    f"(found {describe_foreign(present)}); {way_out}")
        return Manifest(root)
    foreign = manifest.foreign_files(folders)
    if foreign:
        raise ForeignFilesError(f"{root} holds files streamlabel did not write, or changed since it wrote them "
                                f"({describe_foreign(foreign)}); {way_out}")
    return manifest


@register_dataset("synthetic")
def synthetic_dataset(
    root: str | Path, domain: str = "source", seed: int = 0, name: str | None = None, **sizes: int
) -> ReidDataset:
    """The synthetic ``domain`` as a ``ReidDataset`` parsed from ``root`` (Market layout).

    The images are written there first when missing or made with other arguments (``synthetic.json``
    records them), so ``build_dataset("synthetic", root, domain="target")`` works on an empty folder. A
    root holding anything streamlabel did not write (a real dataset, say) is refused, never cleared.
    """
    from .market import MARKET_LAYOUT, MARKET_PATTERN, parse_market_style

    root = Path(root).expanduser()
    wanted = {"domain": domain, "seed": seed, "sizes": sizes}
    current, _manifest = read_meta(root)
    if {k: current.get(k) for k in wanted} != wanted:
        write_synthetic_market(root, seed=seed, domain=domain, overwrite=True, **sizes)
    return parse_market_style(root, name or f"synthetic_{domain}", MARKET_PATTERN, MARKET_LAYOUT)


def preview_grid(
    domain: str = "source",
    seed: int = 0,
    ids: int = 8,
    shots: int = 2,
    num_cams: int = 4,
    height: int = 128,
    width: int = 64,
) -> Image.Image:
    """A picture of the first ``ids`` identities (rows) under every camera, ``shots`` each (columns).

    ``domain="both"`` puts the source and target panels side by side. The people and shots are the
    dataset's own (same seed, same identity index), so the preview shows what training sees.
    """
    domains = ("source", "target") if domain == "both" else (domain,)
    panels = []
    for name in domains:
        identity = np.repeat(np.arange(ids), num_cams * shots)
        cam = np.tile(np.repeat(np.arange(num_cams), shots), ids)
        runs = [(i, c, shots) for i in range(ids) for c in range(num_cams)]
        pixels = _render(seed, name, identity, cam, runs, num_cams, height, width)
        grid = pixels.reshape(ids, num_cams * shots, height, width, 3).transpose(0, 2, 1, 3, 4)
        panel = Image.fromarray(np.ascontiguousarray(grid).reshape(ids * height, num_cams * shots * width, 3))
        panels.append((name, panel))
    header, gap = 16, 12
    total_w = sum(p.width for _, p in panels) + gap * (len(panels) - 1)
    canvas = Image.new("RGB", (total_w, panels[0][1].height + header), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for name, panel in panels:
        canvas.paste(panel, (x, header))
        for c in range(num_cams):
            draw.text((x + c * shots * width + 3, 2), f"{name} c{c + 1}", fill="black")
        x += panel.width + gap
    return canvas
