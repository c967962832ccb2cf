"""Random appearance parameters of the synthetic re-ID generator: domains, identities, cameras, shots.

Parameters are dicts of numpy arrays (one row per identity / camera / image) so the renderer draws a
whole batch with broadcasting. Every identity, camera and (identity, camera) pair has its own RNG
stream keyed by (seed, domain, index), so person 7 looks the same whatever the dataset size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Params = dict[str, np.ndarray]

PATTERNS = ("plain", "stripes", "checks", "logo")
VIEWS = ("front", "back", "side")
BOTTOMS = ("trousers", "shorts", "skirt")
BACKGROUNDS = ("wall_floor", "facade", "tiles", "foliage")

# Natural hair and skin colours (RGB in [0, 1]) shared by both domains.
HAIR = np.array(
    [
        [0.08, 0.06, 0.05],
        [0.25, 0.15, 0.08],
        [0.45, 0.3, 0.15],
        [0.8, 0.68, 0.4],
        [0.6, 0.6, 0.6],
        [0.55, 0.22, 0.1],
    ]
)
SKIN = np.array(
    [[0.96, 0.8, 0.68], [0.87, 0.67, 0.52], [0.72, 0.5, 0.36], [0.5, 0.33, 0.22], [0.33, 0.22, 0.15]]
)


@dataclass(frozen=True)
class DomainStyle:
    """What separates the source and target domains: clothing palette and camera ranges."""

    code: int
    hue_centres: tuple[float, ...]  # clothing hues cluster around these (empty = uniform hue)
    hue_spread: float
    sat_range: tuple[float, float]
    val_range: tuple[float, float]
    achromatic_prob: float  # share of black / grey / white garments
    pattern_probs: tuple[float, float, float, float]  # plain, stripes, checks, logo
    brightness_range: tuple[float, float]
    cast_ranges: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]  # R, G, B gains
    bg_hue_centres: tuple[float, ...]
    bg_sat_range: tuple[float, float]
    bg_val_range: tuple[float, float]
    blur_range: tuple[float, float]  # Gaussian sigma in pixels at 128x64 (scaled with the image)
    noise_range: tuple[float, float]  # additive noise std in 0..255 units
    gamma_range: tuple[float, float]


DOMAINS: dict[str, DomainStyle] = {
    # Bright, saturated clothes under neutral, well-lit daylight cameras (Market-like).
    "source": DomainStyle(
        code=1,
        hue_centres=(),
        hue_spread=0.5,
        sat_range=(0.5, 0.95),
        val_range=(0.5, 0.95),
        achromatic_prob=0.25,
        pattern_probs=(0.4, 0.25, 0.15, 0.2),
        brightness_range=(0.92, 1.15),
        cast_ranges=((0.92, 1.08), (0.92, 1.08), (0.9, 1.02)),
        bg_hue_centres=(0.1, 0.3, 0.55, 0.02),
        bg_sat_range=(0.1, 0.4),
        bg_val_range=(0.55, 0.85),
        blur_range=(0.0, 0.6),
        noise_range=(1.5, 4.0),
        gamma_range=(0.9, 1.1),
    ),
    # Muted winter clothes (blues, browns, greys) under darker, bluish, blurrier cameras (Duke-like).
    "target": DomainStyle(
        code=2,
        hue_centres=(0.6, 0.07, 0.35, 0.95, 0.15),
        hue_spread=0.15,
        sat_range=(0.4, 0.9),
        val_range=(0.4, 0.9),
        achromatic_prob=0.25,
        pattern_probs=(0.45, 0.15, 0.3, 0.1),
        brightness_range=(0.72, 0.88),
        cast_ranges=((0.8, 0.95), (0.9, 1.0), (1.0, 1.2)),
        bg_hue_centres=(0.6, 0.5, 0.75, 0.08),
        bg_sat_range=(0.05, 0.3),
        bg_val_range=(0.35, 0.7),
        blur_range=(0.3, 1.0),
        noise_range=(3.0, 6.0),
        gamma_range=(1.0, 1.15),
    ),
}


def domain_style(domain: str) -> DomainStyle:
    """The style of ``domain`` ("source" or "target"); a clear error for anything else."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown synthetic domain {domain!r}; choose from {', '.join(DOMAINS)}")
    return DOMAINS[domain]


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB, all in [0, 1]; returns shape (..., 3)."""
    h = np.asarray(h) % 1.0
    k = (np.array([5.0, 3.0, 1.0]) + np.asarray(h)[..., None] * 6.0) % 6.0
    return np.asarray(v)[..., None] - np.asarray(v)[..., None] * np.asarray(s)[..., None] * np.clip(
        np.minimum(k, 4.0 - k), 0.0, 1.0
    )


def _garment_colour(rng: np.random.Generator, style: DomainStyle) -> np.ndarray:
    """One clothing colour from the domain palette."""
    if rng.random() < style.achromatic_prob:
        return hsv_to_rgb(0.0, 0.0, rng.choice([0.1, 0.25, 0.45, 0.7, 0.92]) + rng.uniform(-0.05, 0.05))
    if style.hue_centres:
        hue = rng.choice(style.hue_centres) + rng.normal(0.0, style.hue_spread)
    else:
        hue = rng.random()
    return hsv_to_rgb(hue, rng.uniform(*style.sat_range), rng.uniform(*style.val_range))


def _contrast_colour(rng: np.random.Generator, style: DomainStyle, base: np.ndarray) -> np.ndarray:
    """A garment colour visibly different from ``base`` (for stripes, checks and logos)."""
    for _ in range(8):
        colour = _garment_colour(rng, style)
        if np.abs(colour - base).sum() > 0.6:
            return colour
    return np.where(base.mean() > 0.5, base * 0.3, np.clip(base + 0.5, 0.0, 1.0))


def sample_identities(seed: int, domain: str, indices: np.ndarray | range) -> Params:
    """Appearance of the identities ``indices`` (clothes, pattern, accessories, body); one row each."""
    style = domain_style(domain)
    rows = []
    for index in indices:
        rng = np.random.default_rng([seed, style.code, 1, int(index)])
        top = _garment_colour(rng, style)
        bottom = _garment_colour(rng, style)
        shoes = (
            _garment_colour(rng, style) if rng.random() < 0.4 else hsv_to_rgb(0, 0, rng.choice([0.08, 0.9]))
        )
        rows.append(
            {
                "top": top,
                "top2": _contrast_colour(rng, style, top),
                "bottom": bottom,
                "shoes": shoes,
                "hair": HAIR[rng.integers(len(HAIR))] * rng.uniform(0.85, 1.15),
                "skin": SKIN[rng.integers(len(SKIN))],
                "hat_colour": _garment_colour(rng, style),
                "bag_colour": _garment_colour(rng, style),
                "pack_colour": _garment_colour(rng, style),
                "pattern": rng.choice(len(PATTERNS), p=style.pattern_probs),
                "period": rng.uniform(0.03, 0.06),
                "phase": rng.random(),
                "logo_shape": rng.integers(3),
                "has_hat": rng.random() < 0.2,
                "has_bag": rng.random() < 0.3,
                "has_pack": rng.random() < 0.3,
                "bag_side": rng.choice([-1.0, 1.0]),
                "long_sleeves": rng.random() < 0.6,
                "bottom_type": rng.choice(len(BOTTOMS), p=(0.65, 0.2, 0.15)),
                "long_hair": rng.random() < 0.3,
                "hair_len": rng.uniform(0.8, 1.6),
                "height": rng.uniform(0.9, 1.05),
                "width": rng.uniform(0.85, 1.2),
                "head": rng.uniform(0.88, 1.15),
                "leg": rng.uniform(0.4, 0.49),
            }
        )
    return {key: np.array([row[key] for row in rows]) for key in rows[0]} if rows else {}


def sample_cameras(seed: int, domain: str, num_cams: int) -> Params:
    """Per-camera illumination, colour cast, background, blur, noise and preferred viewpoints."""
    style = domain_style(domain)
    # Cameras take turns through background kinds and favoured viewpoints, so neighbours differ.
    order = np.random.default_rng([seed, style.code, 5])
    bg_order, view_order = order.permutation(len(BACKGROUNDS)), order.permutation(len(VIEWS))
    rows = []
    for cam in range(num_cams):
        rng = np.random.default_rng([seed, style.code, 2, cam])
        centres = style.bg_hue_centres
        bg_hue = centres[(cam + seed) % len(centres)] + rng.normal(0.0, 0.04)
        bg = hsv_to_rgb(
            np.array([bg_hue, bg_hue + rng.normal(0, 0.1)]),
            rng.uniform(*style.bg_sat_range, 2),
            rng.uniform(*style.bg_val_range, 2),
        )
        views = np.full(len(VIEWS), 0.15)
        views[view_order[cam % len(VIEWS)]] = 0.7
        rows.append(
            {
                "brightness": rng.uniform(*style.brightness_range),
                "cast": np.array([rng.uniform(*r) for r in style.cast_ranges]),
                "gamma": rng.uniform(*style.gamma_range),
                "blur": rng.uniform(*style.blur_range),
                "noise": rng.uniform(*style.noise_range),
                "light_grad": rng.uniform(-0.3, 0.3),
                "bg_type": bg_order[cam % len(BACKGROUNDS)],
                "bg1": bg[0],
                "bg2": bg[1],
                "horizon": rng.uniform(0.45, 0.75),
                "bg_period": rng.uniform(0.15, 0.5),
                "view_probs": views / views.sum(),
            }
        )
    return {key: np.array([row[key] for row in rows]) for key in rows[0]}


def sample_shots(seed: int, domain: str, identity: int, cam: int, count: int, cameras: Params) -> Params:
    """Per-image jitter for ``count`` shots of one identity in one camera (pose, view, framing, clutter)."""
    style = domain_style(domain)
    rng = np.random.default_rng([seed, style.code, 3, identity, cam])
    n = count
    side = rng.choice([-1.0, 1.0], n)
    return {
        "view": rng.choice(len(VIEWS), n, p=cameras["view_probs"][cam]),
        "facing": side,
        "scale": rng.uniform(0.88, 1.04, n),
        "tx": rng.normal(0.0, 0.05, n),
        "ty": rng.normal(0.0, 0.015, n),
        "lean": rng.normal(0.0, 0.025, n),
        "arm_swing": rng.uniform(-0.08, 0.08, n),
        "stride": rng.uniform(0.0, 0.12, n),
        "spread": rng.uniform(0.0, 0.025, n),
        "light": rng.uniform(0.9, 1.1, n),
        "bg_shift": rng.random(n),
        "clutter": rng.random(n) < 0.5,
        "clutter_x": rng.uniform(0.0, 1.0, n),
        "clutter_w": rng.uniform(0.05, 0.18, n),
        "clutter_h": rng.uniform(0.15, 0.5, n),
        "clutter_colour": hsv_to_rgb(rng.random(n), rng.uniform(0.0, 0.5, n), rng.uniform(0.2, 0.8, n)),
    }


def gather(table: Params, rows: np.ndarray) -> Params:
    """Select ``rows`` of every array of ``table`` (identity or camera parameters for each image)."""
    return {key: value[rows] for key, value in table.items()}
