"""A synthetic fundus generator: a fundus disc with vessels and an optic disc, microaneurysm dots,
haemorrhage blobs, hard and soft exudates; the DR grade and DME risk follow from the lesions.

Grades follow the ICDR logic loosely: no lesion -> 0; microaneurysms only -> 1; haemorrhages or
exudates -> 2; many haemorrhages -> 3; very many -> 4. DME risk: no hard exudate -> 0; hard
exudates away from the macula -> 1; within 1.5 disc diameters of the macula -> 2.

Microaneurysms are drawn with a radius of at least ``MA_MIN_RADIUS`` pixels whatever the image
size (0.6-1.2 % of the short side otherwise, the proportion of a real MA at full resolution):
at the demo's 128 x 192 a proportional MA would be a 1-2 pixel dot, below one pixel of the
segmentation decoder's 1/4-resolution output, and no model could learn it (both models scored
exactly 0 on it). A 3-5 pixel dot is about one decoder pixel: small, but learnable.
"""

from __future__ import annotations

import numpy as np

MA_MIN_RADIUS = 1.5  # pixels


def _disc(h, w, cy, cx, r):
    y, x = np.ogrid[:h, :w]
    return (y - cy) ** 2 + (x - cx) ** 2 <= r * r


def synth_fundus(
    rng: np.random.Generator, size: tuple[int, int] = (128, 192)
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """``(image (3,H,W) float32 in [0,1], masks (5,H,W) bool [MA,HE,EX,SE,OD], dr, dme)``."""
    h, w = size
    s = min(h, w)
    cy, cx, rad = h / 2, w / 2, 0.47 * s
    field = _disc(h, w, cy, cx, rad)
    img = np.zeros((3, h, w), np.float32)
    base = np.array([0.75, 0.35, 0.15]) * rng.uniform(0.85, 1.1)
    y, x = np.mgrid[:h, :w]
    shade = 1 - 0.35 * ((y - cy) ** 2 + (x - cx) ** 2) / rad**2
    for c in range(3):
        img[c] = field * base[c] * shade
    side = rng.choice([-1, 1])
    od_y, od_x, od_r = cy + rng.uniform(-0.05, 0.05) * s, cx + side * 0.28 * w, 0.08 * s
    mac_y, mac_x = cy, cx - side * 0.1 * w
    vessels = np.zeros((h, w), bool)
    for _ in range(6):  # vessels: arcs leaving the optic disc
        ang = rng.uniform(0, 2 * np.pi)
        t = np.linspace(0, 1, 200)
        curve = 0.6 * rng.uniform(-1, 1)
        vy = od_y + t * np.sin(ang) * 0.6 * s + curve * (t**2) * s * 0.3
        vx = od_x + t * np.cos(ang) * 0.6 * s
        for yy, xx in zip(vy.astype(int), vx.astype(int), strict=True):
            if 0 <= yy < h and 0 <= xx < w:
                vessels[max(0, yy - 1) : yy + 1, max(0, xx - 1) : xx + 1] = True
    vessels &= field
    img[:, vessels] *= np.array([0.6, 0.4, 0.4])[:, None]
    od = _disc(h, w, od_y, od_x, od_r) & field
    img[:, od] = np.array([0.98, 0.9, 0.6])[:, None]
    severity = rng.integers(0, 5)
    masks = np.zeros((5, h, w), bool)
    masks[4] = od

    def blobs(n, r_lo, r_hi, color, idx, near=None):
        for _ in range(n):
            for _attempt in range(20):
                if near is not None and rng.random() < 0.6:
                    py, px = near[0] + rng.normal(0, 0.08 * s), near[1] + rng.normal(0, 0.08 * s)
                else:
                    py, px = rng.uniform(0, h), rng.uniform(0, w)
                if (
                    field[int(np.clip(py, 0, h - 1)), int(np.clip(px, 0, w - 1))]
                    and not od[int(np.clip(py, 0, h - 1)), int(np.clip(px, 0, w - 1))]
                ):
                    break
            m = _disc(h, w, py, px, rng.uniform(r_lo, r_hi)) & field & ~od
            masks[idx] |= m
            img[:, m] = np.asarray(color)[:, None]

    n_ma = [0, rng.integers(2, 6), rng.integers(3, 8), rng.integers(5, 10), rng.integers(6, 12)][
        severity
    ]
    n_he = [0, 0, rng.integers(1, 4), rng.integers(4, 8), rng.integers(8, 14)][severity]
    n_ex = [0, 0, rng.integers(0, 5), rng.integers(2, 8), rng.integers(4, 10)][severity]
    n_se = [0, 0, rng.integers(0, 2), rng.integers(1, 3), rng.integers(2, 4)][severity]
    ma_lo = max(MA_MIN_RADIUS, 0.006 * s)
    blobs(n_ma, ma_lo, max(ma_lo + 1.0, 0.012 * s), (0.45, 0.05, 0.05), 0)
    blobs(n_he, 0.02 * s, 0.045 * s, (0.4, 0.08, 0.05), 1)
    blobs(n_ex, 0.008 * s, 0.02 * s, (0.95, 0.9, 0.35), 2, near=(mac_y, mac_x))
    blobs(n_se, 0.03 * s, 0.05 * s, (0.85, 0.75, 0.6), 3)
    img += rng.normal(0, 0.02, img.shape).astype(np.float32) * field
    img = np.clip(img, 0, 1).astype(np.float32)
    if n_ma + n_he + n_ex + n_se == 0:
        dr = 0
    elif n_he + n_ex + n_se == 0:
        dr = 1
    else:
        dr = int(min(4, max(2, severity)))
    if not masks[2].any():
        dme = 0
    else:
        ey, ex_ = np.nonzero(masks[2])
        near = np.min(np.hypot(ey - mac_y, ex_ - mac_x)) <= 1.5 * 2 * od_r
        dme = 2 if near else 1
    return img, masks, dr, dme
