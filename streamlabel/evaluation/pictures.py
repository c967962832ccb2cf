"""Pictures of what the model sees: a ranked-retrieval grid and a montage of pseudo-label clusters.

Both are PNG files built with PIL from the image files themselves: every image is resized to one cell
(64 x 128 pixels by default) inside a coloured border, with a line of text under it. Retrieval grid: one row
per query (blue border), then its top gallery images under the standard protocol (the query's own identity
in its own camera and junk, pid -1, removed), green when the identity is right, red when wrong, the camera
under each. Cluster montage: one row per pseudo-label cluster, its size and purity (the share of its most
common true identity) on the left, members green when they carry that identity, red otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["CELL", "GREEN", "RED", "BLUE", "cluster_montage", "ranked_gallery", "retrieval_grid"]

CELL = (64, 128)  # width, height of one image
BORDER, TEXT_H, GAP, LABEL_W = 4, 14, 6, 150
GREEN, RED, BLUE, WHITE, BLACK = (0, 170, 0), (220, 0, 0), (0, 90, 220), (255, 255, 255), (0, 0, 0)


def ranked_gallery(query_feats: np.ndarray, query_pids: np.ndarray, query_cams: np.ndarray,
                   gallery_feats: np.ndarray, gallery_pids: np.ndarray, gallery_cams: np.ndarray,
                   rows: Sequence[int], top: int = 10) -> list[np.ndarray]:
    """For each query row: the indices of its ``top`` nearest gallery images by cosine, after removing the
    gallery images of its identity in its camera and the junk (pid -1), as the mAP protocol does."""
    g = gallery_feats / np.maximum(np.linalg.norm(gallery_feats, axis=1, keepdims=True), 1e-12)
    out = []
    for row in rows:
        q = query_feats[row] / max(float(np.linalg.norm(query_feats[row])), 1e-12)
        score = g @ q
        removed = ((gallery_pids == query_pids[row]) & (gallery_cams == query_cams[row])) | (gallery_pids == -1)
        score[removed] = -np.inf
        order = np.argsort(-score, kind="stable")[:top]
        out.append(order[np.isfinite(score[order])])
    return out


def _cell(path: str | Path, colour: tuple[int, int, int], text: str) -> Image.Image:
    """One image resized to CELL inside a ``colour`` border, ``text`` under it."""
    w, h = CELL
    tile = Image.new("RGB", (w + 2 * BORDER, h + 2 * BORDER + TEXT_H), WHITE)
    tile.paste(Image.new("RGB", (w + 2 * BORDER, h + 2 * BORDER), colour), (0, 0))
    with Image.open(path) as img:
        tile.paste(img.convert("RGB").resize(CELL, Image.BILINEAR), (BORDER, BORDER))
    ImageDraw.Draw(tile).text((BORDER, h + 2 * BORDER + 1), text, fill=BLACK)
    return tile


def _save_rows(rows: list[tuple[str, list[Image.Image]]], out: Path) -> tuple[int, int]:
    """Rows of (label, tiles) stacked into one PNG at ``out``; returns its (width, height)."""
    tile_w, tile_h = CELL[0] + 2 * BORDER, CELL[1] + 2 * BORDER + TEXT_H
    width = LABEL_W + max(len(tiles) for _, tiles in rows) * (tile_w + GAP)
    height = len(rows) * (tile_h + GAP) + GAP
    canvas = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(canvas)
    for r, (label, tiles) in enumerate(rows):
        y = GAP + r * (tile_h + GAP)
        for i, line in enumerate(label.split("\n")):
            draw.text((GAP, y + 4 + 14 * i), line, fill=BLACK)
        for c, tile in enumerate(tiles):
            canvas.paste(tile, (LABEL_W + c * (tile_w + GAP), y))
    canvas.save(out, format="PNG")
    return width, height


def retrieval_grid(query_paths: Sequence[str], query_pids: np.ndarray, query_cams: np.ndarray,
                   gallery_paths: Sequence[str], gallery_pids: np.ndarray, gallery_cams: np.ndarray,
                   ranked: dict[int, np.ndarray], out: Path) -> tuple[int, int]:
    """The retrieval grid of the queries in ``ranked`` (query row -> ranked gallery indices) into ``out``."""
    rows = []
    for q, order in ranked.items():
        right = int((gallery_pids[order] == query_pids[q]).sum())
        tiles = [_cell(query_paths[q], BLUE, f"query c{int(query_cams[q])}")]
        tiles += [_cell(gallery_paths[g], GREEN if gallery_pids[g] == query_pids[q] else RED,
                        f"{rank + 1}: c{int(gallery_cams[g])}") for rank, g in enumerate(order)]
        rows.append((f"query {q}\nid {int(query_pids[q])}\n{right}/{len(order)} right", tiles))
    return _save_rows(rows, out)


def cluster_montage(paths: Sequence[str], labels: np.ndarray, pids: np.ndarray, cams: np.ndarray, out: Path,
                    *, clusters: int = 8, per_row: int = 10) -> tuple[int, int]:
    """A montage of ``clusters`` pseudo-label clusters (spread from the largest to the smallest of size >= 2)
    into ``out``: at most ``per_row`` members each, green when a member carries the cluster's majority id."""
    ids, sizes = np.unique(labels[labels >= 0], return_counts=True)
    keep = sizes >= 2
    ids, sizes = ids[keep], sizes[keep]
    if ids.size == 0:
        raise ValueError("no pseudo-label cluster has two or more members: nothing to draw")
    by_size = ids[np.argsort(-sizes, kind="stable")]
    chosen = by_size[np.unique(np.linspace(0, by_size.size - 1, min(clusters, by_size.size)).round().astype(int))]
    rows = []
    for cid in chosen:
        members = np.flatnonzero(labels == cid)
        values, counts = np.unique(pids[members], return_counts=True)
        major = values[np.argmax(counts)]
        tiles = [_cell(paths[m], GREEN if pids[m] == major else RED, f"id {int(pids[m])} c{int(cams[m])}")
                 for m in members[:per_row]]
        rows.append((f"cluster {int(cid)}\n{members.size} images\npurity {counts.max() / members.size:.2f}", tiles))
    return _save_rows(rows, out)
