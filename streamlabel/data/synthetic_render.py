"""Vectorised drawing of synthetic pedestrians: signed-distance shapes, one batch of images at once.

Each body part is a signed distance field over person coordinates (u across, v from head top to feet,
both in units of the person's height) turned into an anti-aliased alpha and painted in order. The
camera then applies background, illumination, colour cast, gamma, blur and noise.
"""

from __future__ import annotations

import numpy as np

from .synthetic_params import Params

CHUNK_PIXELS = 1 << 19  # pixels drawn per numpy batch (64 images of 128x64): keeps layers in cache


def _box(u, v, cu, cv, hu, hv, rc=0.0):
    """Signed distance to a box of half sizes (hu, hv) centred at (cu, cv), corners rounded by rc."""
    qu = np.abs(u - cu) - (hu - rc)
    qv = np.abs(v - cv) - (hv - rc)
    return np.hypot(np.maximum(qu, 0.0), np.maximum(qv, 0.0)) + np.minimum(np.maximum(qu, qv), 0.0) - rc


def _ellipse(u, v, cu, cv, a, b):
    """Approximate signed distance to an axis-aligned ellipse of radii (a, b)."""
    return (np.hypot((u - cu) / a, (v - cv) / b) - 1.0) * np.minimum(a, b)


def _capsule(u, v, u0, v0, u1, v1, r):
    """Signed distance to the segment (u0, v0)-(u1, v1) thickened by radius r (limbs)."""
    pu, pv, du, dv = u - u0, v - v0, u1 - u0, v1 - v0
    t = np.clip((pu * du + pv * dv) / (du * du + dv * dv + 1e-9), 0.0, 1.0)
    return np.hypot(pu - t * du, pv - t * dv) - r


def _b(x: np.ndarray) -> np.ndarray:
    """Per-image scalar -> broadcastable (B, 1, 1)."""
    return np.asarray(x, dtype=np.float32).reshape(-1, 1, 1)


def _c(x: np.ndarray) -> np.ndarray:
    """Per-image colour -> broadcastable (B, 1, 1, 3)."""
    return np.asarray(x, dtype=np.float32).reshape(-1, 1, 1, 3)


class _Painter:
    """Paints anti-aliased SDF shapes over a (B, H, W, 3) canvas, one band of rows at a time.

    ``u``, ``v`` are person coordinates per pixel, ``top`` the head row and ``px`` the person height in
    pixels (both (B, 1, 1)); a shape is evaluated only on the rows its v-range can reach in the batch.
    """

    def __init__(
        self, canvas: np.ndarray, u: np.ndarray, v: np.ndarray, top: np.ndarray, px: np.ndarray
    ) -> None:
        self.canvas, self.u, self.v, self.top, self.px = canvas, u, v, top, px

    def paint(self, sdf, colour, gate=1.0, band=(-0.05, 1.05)) -> None:
        """Paint where ``sdf(u, v) < 0``; ``colour``: (B,1,1,3) or a function of (u, v); ``gate``: (B,1,1)."""
        if not np.any(gate):
            return
        height = self.canvas.shape[1]
        lo = np.floor(np.min(self.top + (np.asarray(band[0]) - 0.02) * self.px))
        hi = np.ceil(np.max(self.top + (np.asarray(band[1]) + 0.02) * self.px)) + 1
        rows = slice(int(np.clip(lo, 0, height)), int(np.clip(hi, 0, height)))
        if rows.start >= rows.stop:
            return
        u, v = self.u[:, rows], self.v[:, rows]
        alpha = sdf(u, v) * -self.px
        alpha += 0.5
        if not np.isscalar(gate):
            alpha *= gate > 0
        hit = np.nonzero(alpha > 0)  # update only covered pixels: shapes fill a small part of the band
        a = np.minimum(alpha[hit], 1.0)[:, None]
        colour = colour(u, v)[hit] if callable(colour) else colour[hit[0], 0, 0]
        target = self.canvas[:, rows]
        old = target[hit]
        target[hit] = old + a * (colour - old)


def _lerp_matrix(pos: np.ndarray, knots: int) -> np.ndarray:
    """(len(pos), knots) weights that linearly interpolate ``knots`` values spread over [0, 1] at ``pos``."""
    grid = pos[:, None] * (knots - 1) - np.arange(knots, dtype=np.float32)[None]
    return np.maximum(1.0 - np.abs(grid), 0.0).astype(np.float32)


def _background(p: Params, ys: np.ndarray, xs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera background (wall/floor, facade, tiles or foliage), shifted per image, plus clutter."""
    b = len(p["bg_type"])
    y, x = ys[None, :, None], xs[None, None, :]  # normalised to [0, 1]
    t, shift, period = _b(p["bg_type"]), _b(p["bg_shift"]), _b(p["bg_period"])
    horizon = _b(p["horizon"]) + 0.05 * (shift - 0.5)
    wall_floor = (y > horizon).astype(np.float32)
    facade = ((x / period + shift) % 1.0 < 0.55).astype(np.float32) * (y < horizon + 0.2)
    tiles = (np.floor(x / period * 2 + shift * 3) + np.floor(y / period * 2)) % 2
    low = rng.random((b, 5, 4), dtype=np.float32)
    smooth = _lerp_matrix(ys, 5) @ low @ _lerp_matrix(xs, 4).T  # bilinear low-frequency noise in [0, 1]
    foliage = (smooth > 0.5).astype(np.float32) * 0.6 + smooth * 0.4
    mix = np.select([t == 0, t == 1, t == 2], [wall_floor, facade, tiles * 0.6], foliage)
    canvas = _c(p["bg1"]) + mix[..., None] * (_c(p["bg2"]) - _c(p["bg1"]))
    canvas *= (0.85 + 0.3 * smooth)[..., None]
    clutter = _box(x, y, _b(p["clutter_x"]), 1.0, _b(p["clutter_w"]), _b(p["clutter_h"]))
    inside = (clutter < 0) & (_b(p["clutter"]) > 0)
    return np.where(inside[..., None], _c(p["clutter_colour"]), canvas).astype(np.float32)


def _draw_person(pt: _Painter, p: Params) -> None:
    """Paint one pedestrian per image, back to front; ``pt.u`` is already mirrored for side views."""
    view = p["view"]
    front, back, side = _b(view == 0), _b(view == 1), _b(view == 2)
    wf, leg = _b(p["width"]), _b(p["leg"])
    rh = 0.062 * _b(p["head"])
    vhc = 0.005 + rh
    vs = vhc + rh + 0.025  # shoulders
    vank = np.float32(0.965)
    vw = vank - leg  # waist
    narrow = 1.0 - 0.42 * side
    wsh, ww = 0.125 * wf * narrow, 0.105 * wf * narrow
    hair, skin, top, bottom = _c(p["hair"]), _c(p["skin"]), _c(p["top"]), _c(p["bottom"])
    long_hair, pack, bag, hat = _b(p["long_hair"]), _b(p["has_pack"]), _b(p["has_bag"]), _b(p["has_hat"])
    pack_colour, btype = _c(p["pack_colour"]), _b(p["bottom_type"])
    hair_len = rh * 1.3 * _b(p["hair_len"])

    def hair_box(u, v):
        return _box(u, v, -0.02 * side, vhc + 0.04, rh * 0.95, hair_len, 0.02)

    hair_band = (0.0, vhc + 0.04 + hair_len)

    # Behind the body: long hair (front/side views) and a backpack seen from the side.
    pt.paint(hair_box, hair, long_hair * (1 - back), hair_band)
    pt.paint(
        lambda u, v: _box(u, v, -(wsh + 0.045), vs + 0.12, 0.05, 0.11, 0.02),
        pack_colour,
        pack * side,
        (vs, vs + 0.23),
    )

    # Legs: apart in front/back views, striding in side views; trousers, shorts or bare legs.
    stride, spread, lr = _b(p["stride"]) * 0.5, _b(p["spread"]), 0.042 * wf
    for sign in (-1.0, 1.0):
        hip_u = sign * ww * 0.5 * (1 - side)
        ank_u = np.where(side > 0, sign * stride, sign * (ww * 0.5 + spread))
        knee_u, knee_v = hip_u + 0.4 * (ank_u - hip_u), vw + 0.4 * leg
        pt.paint(
            lambda u, v, h=hip_u, a=ank_u: _capsule(u, v, h, vw, a, vank - 0.01, lr),
            np.where(btype[..., None] == 0, bottom, skin),
            1.0,
            (vw - lr, vank + lr),
        )
        pt.paint(
            lambda u, v, h=hip_u, k=knee_u, kv=knee_v: _capsule(u, v, h, vw, k, kv, lr * 1.15),
            bottom,
            (btype == 1).astype(np.float32),
            (vw - lr * 1.2, knee_v + lr * 1.2),
        )
        toe = ank_u + 0.015 * side
        pt.paint(
            lambda u, v, t=toe: _ellipse(u, v, t, 0.982, 0.034 + 0.012 * side, 0.02),
            _c(p["shoes"]),
            1.0,
            (0.96, 1.0),
        )
    pt.paint(
        lambda u, v: _box(u, v, 0.0, vw + 0.02, ww, 0.04, 0.01),
        bottom,
        (btype < 2).astype(np.float32),
        (vw - 0.02, vw + 0.06),
    )

    def skirt(u, v):
        flare = ww * (1.05 + 0.4 * np.clip((v - vw) / (0.45 * leg), 0.0, 1.0))
        return np.maximum(np.abs(u) - flare, np.abs(v - vw - 0.22 * leg) - 0.225 * leg)

    pt.paint(skirt, bottom, (btype == 2).astype(np.float32), (vw - 0.005, vw + 0.45 * leg))

    # Neck and torso, with the identity's pattern; the logo is only visible from the front.
    pt.paint(
        lambda u, v: _box(u, v, 0.01 * side, vhc + rh, 0.025, 0.03),
        skin,
        1.0,
        (vhc + rh - 0.03, vhc + rh + 0.03),
    )
    mid, half_h = (vs + vw) / 2 + 0.008, (vw - vs) / 2 + 0.008

    def torso(u, v):
        half = wsh + (ww - wsh) * np.clip((v - vs) / (vw - vs), 0.0, 1.0)
        box = np.maximum(np.abs(u) - half, np.abs(v - mid) - half_h)
        return np.maximum(box, _ellipse(u, v, 0.0, mid + 0.032, wsh * 1.12, half_h + 0.062))

    period, pattern, phase, top2 = _b(p["period"]), _b(p["pattern"]), _b(p["phase"]), _c(p["top2"])

    def torso_colour(u, v):
        stripes = ((v - vs) / period + phase) % 1.0 < 0.5
        checks = (np.floor(u / period + 50.0) + np.floor((v - vs) / period)) % 2 > 0
        field = ((pattern == 1) & stripes) | ((pattern == 2) & checks)
        return np.where(field[..., None], top2, top)

    pt.paint(torso, torso_colour, 1.0, (vs - 0.03, vw + 0.02))
    lc, shape = vs + 0.085, _b(p["logo_shape"])

    def logo(u, v):
        return np.select(
            [shape == 0, shape == 1],
            [np.hypot(u, v - lc) - 0.035, _box(u, v, 0.0, lc, 0.033, 0.03)],
            np.abs(u) + np.abs(v - lc) - 0.045,
        )

    pt.paint(logo, top2, (pattern == 3) * front, (lc - 0.05, lc + 0.05))

    # Back view: long hair over the shoulders, then the backpack; front view: its straps.
    pt.paint(hair_box, hair, long_hair * back, hair_band)
    pt.paint(
        lambda u, v: _box(u, v, 0.0, vs + 0.13, wsh * 0.75, 0.12, 0.025),
        pack_colour,
        pack * back,
        (vs, vs + 0.25),
    )
    pt.paint(
        lambda u, v: _box(u, v, 0.0, vs + 0.17, wsh * 0.5, 0.04, 0.01),
        pack_colour * 0.7,
        pack * back,
        (vs + 0.13, vs + 0.21),
    )
    for sign in (-1.0, 1.0):
        pt.paint(
            lambda u, v, s=sign: _box(u, v, s * wsh * 0.55, vs + 0.09, 0.013, 0.1),
            pack_colour,
            pack * front,
            (vs - 0.01, vs + 0.19),
        )

    # Shoulder bag: strap across the chest, bag at the hip (sides swap in the back view).
    bag_side = _b(p["bag_side"]) * (1 - 2 * back)
    bag_u = np.where(side > 0, 0.02, bag_side * (ww + 0.055))
    pt.paint(
        lambda u, v: _capsule(u, v, -bag_side * wsh * 0.6, vs + 0.005, bag_u, vw - 0.03, 0.008),
        _c(p["bag_colour"]) * 0.8,
        bag * (1 - side),
        (vs - 0.01, vw),
    )
    pt.paint(
        lambda u, v: _box(u, v, bag_u, vw + 0.03, 0.045, 0.05, 0.012),
        _c(p["bag_colour"]),
        bag,
        (vw - 0.02, vw + 0.08),
    )

    # Arms (one visible from the side), sleeves and hands.
    ar, arm_len, swing = 0.03 * wf, 0.31 + 0.1 * (leg - 0.4), _b(p["arm_swing"])
    sleeve = _b(p["long_sleeves"])
    arm_band = (vs, vs + arm_len + ar + 0.01)
    for sign in (-1.0, 1.0):
        su = np.where(side > 0, 0.0, sign * (wsh - 0.008))
        hu = np.where(side > 0, swing * 1.5, sign * (wsh + 0.02 + 0.2 * np.abs(swing)))
        gate = 1.0 - side * (sign < 0)
        pt.paint(
            lambda u, v, s=su, h=hu: _capsule(u, v, s, vs + ar, h, vs + arm_len, ar),
            np.where(sleeve[..., None] > 0, top, skin),
            gate,
            arm_band,
        )
        eu, ev = su + 0.35 * (hu - su), vs + ar + 0.35 * (arm_len - ar)
        pt.paint(
            lambda u, v, s=su, e=eu, f=ev: _capsule(u, v, s, vs + ar, e, f, ar * 1.15),
            top,
            gate * (1 - sleeve),
            arm_band,
        )
        pt.paint(
            lambda u, v, h=hu: np.hypot(u - h, v - vs - arm_len - 0.01) - ar * 0.95, skin, gate, arm_band
        )

    # Head, hair (cap in front, all of it from the back, back half from the side), eyes and hat.
    head_u, head_band = 0.012 * side, (-0.03, vhc + rh * 1.05)
    pt.paint(lambda u, v: _ellipse(u, v, head_u, vhc, rh * 0.82, rh), skin, 1.0, head_band)

    def hair_cut(u, v):
        crown = _ellipse(u, v, head_u, vhc - 0.05 * rh, rh * 0.88, rh * 1.04)
        cap = np.maximum(crown, v - (vhc - 0.3 * rh))
        profile = np.maximum(crown, np.minimum(u - head_u + 0.15 * rh, v - (vhc - 0.3 * rh)))
        return np.where(back > 0, crown, np.where(side > 0, profile, cap))

    pt.paint(hair_cut, hair, 1.0, head_band)
    pt.paint(
        lambda u, v: np.hypot(u - (head_u + 0.45 * rh), v - vhc + 0.05 * rh) - 0.18 * rh,
        hair * 0.5,
        side,
        head_band,
    )
    for sign in (-1.0, 1.0):
        pt.paint(
            lambda u, v, s=sign: np.hypot(u - s * 0.35 * rh, v - vhc + 0.05 * rh) - 0.11 * rh,
            hair * 0.4,
            front,
            head_band,
        )
    hat_c = _c(p["hat_colour"])
    pt.paint(
        lambda u, v: np.maximum(
            _ellipse(u, v, head_u, vhc - 0.2 * rh, rh * 0.95, rh * 0.92), v - (vhc - 0.25 * rh)
        ),
        hat_c,
        hat,
        head_band,
    )
    pt.paint(
        lambda u, v: _box(u, v, head_u + 0.5 * rh * side, vhc - 0.3 * rh, rh * (1.1 - 0.4 * side), 0.009),
        hat_c * 0.85,
        hat,
        head_band,
    )


def _blur(img: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Separable Gaussian blur with a per-image sigma (B,), 5-tap kernels, edge padding."""
    taps = np.arange(-2, 3, dtype=np.float32)
    s = np.maximum(sigma.astype(np.float32), 1e-3)[:, None]
    w = np.exp(-0.5 * (taps[None] / s) ** 2)
    w /= w.sum(1, keepdims=True)
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (2, 2)
        padded = np.pad(img, pad, mode="edge")
        size = img.shape[axis]
        out = np.zeros_like(img)
        for k in range(5):
            sl = [slice(None)] * 4
            sl[axis] = slice(k, k + size)
            out += w[:, k, None, None, None] * padded[tuple(sl)]
        img = out
    return img


def render_images(p: Params, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one image per row of ``p`` (identity + camera + shot parameters): uint8 (N, H, W, 3)."""
    n = len(p["view"])
    out = np.empty((n, height, width, 3), dtype=np.uint8)
    ys = (np.arange(height, dtype=np.float32) + 0.5) / height
    xs = (np.arange(width, dtype=np.float32) + 0.5) / width
    chunk = max(8, CHUNK_PIXELS // (height * width))
    for start in range(0, n, chunk):
        q = {key: value[start : start + chunk] for key, value in p.items()}
        canvas = _background(q, ys, xs, rng)
        px = _b(q["scale"] * q["height"] * 0.9 * height)  # person height in pixels
        feet = _b(0.975 + q["ty"]) * height
        centre = _b(0.5 + q["tx"] * 0.5) * width
        yy, xx = ys[None, :, None] * height, xs[None, None, :] * width
        v = (yy - (feet - px)) / px
        u = (xx - centre) / px + _b(q["lean"]) * (1.0 - v)
        u = u * np.where(_b(q["view"]) == 2, _b(q["facing"]), 1.0)
        _draw_person(_Painter(canvas, u.astype(np.float32), v.astype(np.float32), feet - px, px), q)
        light = _b(q["brightness"] * q["light"]) * (1.0 + _b(q["light_grad"]) * (0.5 - ys[None, :, None]))
        canvas *= light[..., None] * _c(q["cast"])
        img = _blur(canvas, q["blur"] * height / 128.0)
        img *= 255.0
        img += rng.standard_normal(img.shape, dtype=np.float32) * _b(q["noise"])[..., None]
        img = np.clip(img + 0.5, 0, 255).astype(np.uint8)
        for gamma in np.unique(q["gamma"]):  # sensor response curve, as a lookup table per camera
            lut = np.round(255.0 * (np.arange(256) / 255.0) ** gamma).astype(np.uint8)
            same = q["gamma"] == gamma
            img[same] = lut[img[same]]
        out[start : start + chunk] = img
    return out
