"""Numpy drawing of synthetic radiograph anatomy: bones as primitives, regions, lesions.

A projection radiograph records the attenuation *summed along each ray*, so bones are
drawn as line integrals (half-chords, in mm) through idealised solids rather than as
flat shapes: a hollow tube then shows the bright tangential cortex and the dimmer
medulla that make a long bone look like a long bone, and overlapping bones add up.
Three layers are accumulated (soft tissue, cortex, medulla) so lesions can act on
each physically (lysis removes medulla, periosteal reaction adds cortex...).

Geometry is written in millimetres in an anatomical frame (field of view of the
region); a ``Frame`` maps it to working pixels with patient size, rotation and the
left/right mirror, and every primitive is evaluated only inside its bounding box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mskstudio.io.phantom_regions import LAYOUTS, Blob, Layout, Tube  # noqa: F401


# ---------------------------------------------------------------- frame & layers
class Frame:
    """Anatomy mm -> working-pixel similarity transform (scale, mirror, rotation, shift)."""

    def __init__(self, fov_mm, shape, mm_per_px, scale=1.0, angle_deg=0.0, mirror=False,
                 shift_mm=(0.0, 0.0)):
        self.c_mm = np.array(fov_mm, float) / 2.0
        self.c_px = np.array([shape[1], shape[0]], float) / 2.0 + np.array(shift_mm) / mm_per_px
        self.k = float(scale / mm_per_px)   # pixels per anatomical mm
        self.mmpp = float(mm_per_px / scale)  # anatomical mm per pixel
        a = math.radians(angle_deg)
        m = np.array([[-1.0, 0.0], [0.0, 1.0]]) if mirror else np.eye(2)
        self.R = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) @ m
        self.angle, self.mirror = angle_deg, mirror

    def pt(self, p):
        q = self.R @ (np.asarray(p, float) - self.c_mm) * self.k + self.c_px
        return q

    def vec(self, v):
        return self.R @ np.asarray(v, float)

    def ang(self, deg):
        return (-deg if self.mirror else deg) + self.angle


class Layers:
    """Half-chord lengths in mm per working pixel for soft tissue, cortex and medulla."""

    def __init__(self, shape):
        self.shape = shape
        self.soft = np.zeros(shape, np.float32)
        self.cort = np.zeros(shape, np.float32)
        self.med = np.zeros(shape, np.float32)
        self.placed: dict[str, tuple] = {}   # tube name -> (a_px, b_px, tube) for lesions

    def window(self, cx, cy, half):
        """Slices and local pixel-centre grids of a square window clipped to the image."""
        h, w = self.shape
        x0, x1 = max(int(cx - half), 0), min(int(cx + half) + 2, w)
        y0, y1 = max(int(cy - half), 0), min(int(cy + half) + 2, h)
        if x0 >= x1 or y0 >= y1:
            return None
        xs = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5
        ys = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5
        return (slice(y0, y1), slice(x0, x1)), xs, ys


def _chord(r, d):
    return np.sqrt(np.maximum(r * r - d * d, 0.0))


def tube_radius(t: Tube, tc):
    """Radius (mm) along the tube: linear taper plus flares at the two ends (metaphyses)."""
    r0, r1, fa, fb = float(t.r0), float(t.r1), float(t.fa), float(t.fb)
    lin = r0 + (r1 - r0) * tc
    flare = fa * np.clip(1 - tc / 0.22, 0, 1) ** 2 + fb * np.clip((tc - 0.78) / 0.22, 0, 1) ** 2
    return lin, lin + flare


def draw_tube(L: Layers, fr: Frame, t: Tube):
    a, b = fr.pt(t.a), fr.pt(t.b)
    rmax = (max(t.r0, t.r1) + max(t.fa, t.fb)) * fr.k
    c = (a + b) / 2
    win = L.window(c[0], c[1], np.abs(b - a).max() / 2 + rmax + 2)
    if t.layer == "bone":
        L.placed[t.name] = (a, b, t)
    if win is None:
        return
    sl, xs, ys = win
    # Python floats, so the float32 grids are not promoted to float64 (NEP 50): 2x faster.
    ax, ay, dx, dy = float(a[0]), float(a[1]), float(b[0] - a[0]), float(b[1] - a[1])
    tt = ((xs - ax) * dx + (ys - ay) * dy) / max(dx * dx + dy * dy, 1e-6)
    tc = np.clip(tt, 0, 1)
    dist = np.hypot(xs - (ax + tc * dx), ys - (ay + tc * dy)) / fr.k   # mm
    lin, r = tube_radius(t, tc)
    outer = _chord(r, dist)
    if t.layer == "soft":
        L.soft[sl] += float(t.dens) * outer
        return
    # Cortex thins where the bone flares (metaphysis) - the classic shape of a long bone.
    ct = np.minimum(float(t.ct) * np.clip(lin / r, 0.3, 1.0), r * 0.7)
    inner = _chord(r - ct, dist)
    L.cort[sl] += float(t.dens) * (outer - inner)
    L.med[sl] += float(t.dens) * inner


def draw_blob(L: Layers, fr: Frame, b: Blob):
    c = fr.pt(b.c)
    win = L.window(c[0], c[1], max(b.ax, b.ay) * fr.k + 2)
    if win is None:
        return
    sl, xs, ys = win
    a = math.radians(fr.ang(b.ang))
    cx, cy, ca, sa = float(c[0]), float(c[1]), math.cos(a), math.sin(a)
    u = ((xs - cx) * ca + (ys - cy) * sa) / fr.k
    v = (-(xs - cx) * sa + (ys - cy) * ca) / fr.k
    bx, by, bp = float(b.ax), float(b.ay), float(b.p)
    rho = (np.abs(u / bx) ** bp + np.abs(v / by) ** bp) ** (1.0 / bp)
    depth = float(b.depth if b.depth is not None else min(bx, by))
    outer = depth * _chord(1.0, rho)
    if b.layer == "soft":
        L.soft[sl] += float(b.dens) * outer
        return
    f = float(max(1.0 - b.ct / min(bx, by), 0.05))
    inner = depth * f * _chord(1.0, rho / f)
    L.cort[sl] += float(b.dens) * (outer - inner)
    L.med[sl] += float(b.dens) * inner


def draw_layout(layout: Layout, fr: Frame, shape) -> Layers:
    L = Layers(shape)
    for p in layout.prims:
        (draw_tube if isinstance(p, Tube) else draw_blob)(L, fr, p)
    np.maximum(L.soft, 0, out=L.soft)       # negative soft = air (lungs, bowel gas)
    return L


# ---------------------------------------------------------------- textures
def smooth_noise(shape, scale_px, rng):
    """Gaussian-ish correlated noise (zero mean, unit std) by bicubic upsampling of white noise."""
    h, w = shape
    sh, sw = max(int(h / scale_px) + 2, 2), max(int(w / scale_px) + 2, 2)
    small = rng.standard_normal((sh, sw)).astype(np.float32)
    img = np.asarray(Image.fromarray(small, "F").resize((w, h), Image.BICUBIC))
    return (img - img.mean()) / (img.std() + 1e-6)


def trabecular(shape, mm_per_px, rng):
    """Band-passed noise folded into a net-like pattern (trabeculae ~1-2 mm apart)."""
    s = max(0.7 / mm_per_px, 1.0)
    n = smooth_noise(shape, s, rng) - 0.6 * smooth_noise(shape, 3 * s, rng)
    return 1.0 - 2.0 * np.abs(np.tanh(n))      # ridges where the band-pass crosses zero


# ---------------------------------------------------------------- overlays & non-MSK
@lru_cache(maxsize=32)
def font(size: int):
    """FreeType default font (loading it costs ~ms, so cache per size)."""
    return ImageFont.load_default(size=size)


def burn_marker(img, letter, mmpp, rng):
    """Burned-in lead L/R marker: radio-opaque, so bright on a bone-bright image."""
    h, w = img.shape
    size = max(int(14 / mmpp), 8)
    fnt = font(size)
    tile = Image.new("L", (int(size * 1.2), int(size * 1.3)), 0)
    d = ImageDraw.Draw(tile)
    d.rectangle([0, 0, tile.width - 1, tile.height - 1], outline=120, width=max(size // 12, 1))
    d.text((size * 0.25, size * 0.05), letter, fill=255, font=fnt)
    t = np.asarray(tile, np.float32) / 255.0
    y = int(rng.uniform(0.04, 0.1) * h)
    x = int(rng.uniform(0.04, 0.1) * w) if rng.random() < 0.5 else int(w * rng.uniform(0.9, 0.96) - t.shape[1])
    th, tw = t[: h - y, : w - x].shape
    reg = img[y: y + th, x: x + tw]
    img[y: y + th, x: x + tw] = np.maximum(reg, 0.97 * t[:th, :tw])


def blur(img, factor):
    h, w = img.shape
    # reduce() is a plain box average: much cheaper than an antialiased resize
    small = Image.fromarray(np.ascontiguousarray(img, np.float32), "F").reduce(max(min(factor, h // 2, w // 2), 1))
    return np.asarray(small.resize((w, h), Image.BILINEAR))


def screenshot(shape, rng):
    """A GUI screenshot (PACS worklist / report) captured as an image - not a radiograph."""
    h, w = shape
    dark = rng.random() < 0.5
    im = Image.new("L", (w, h), 30 if dark else 225)
    d = ImageDraw.Draw(im)
    fs = max(h // 40, 8)
    fnt = font(fs)
    d.rectangle([0, 0, w, fs * 2], fill=70 if dark else 180)
    d.text((fs, fs // 3), "PACS Viewer - Worklist   File  Edit  View  Tools  Help", fill=235 if dark else 20, font=fnt)
    y, words = fs * 3, ["PATIENT", "DOE^JANE", "KNEE", "AP", "CR", "2019-03-04", "FINAL", "REPORT", "pending", "MSK"]
    while y < h - fs * 2:
        line = "  ".join(rng.choice(words, size=int(rng.integers(3, 8))))
        d.text((fs, y), f"{int(rng.integers(1000, 9999))}  {line}", fill=200 if dark else 40, font=fnt)
        y += int(fs * 1.6)
    if rng.random() < 0.6:   # a thumbnail pane with a grey box
        x0 = int(w * 0.6)
        d.rectangle([x0, fs * 3, w - fs, h // 2], fill=110, outline=250 if dark else 0)
    return np.asarray(im, np.float32) / 255.0



# ---------------------------------------------------------------- lesions
@dataclass(frozen=True)
class LesionSite:
    bone: str
    t: float          # 0..1 along the bone from its first point
    side: int         # +1 / -1: which side of the bone an eccentric component sits
    size: float       # relative size 0.7..1.3
    conspicuity: float  # 0.5..1: how obvious (learnable but not trivial)


def _local(L: Layers, fr: Frame, site: LesionSite, reach_mm):
    """Window around the lesion centre and local coordinates S (along bone), Q (across), mm."""
    a, b, tube = L.placed[site.bone]
    d = (b - a) / max(np.linalg.norm(b - a), 1e-6)
    ax_mm = (np.asarray(tube.b, float) - np.asarray(tube.a, float))
    n_mm = np.array([-ax_mm[1], ax_mm[0]]) / max(np.linalg.norm(ax_mm), 1e-6)
    n = fr.vec(n_mm)                          # anatomical normal, so mirroring keeps the side
    p = a + site.t * (b - a)
    win = L.window(p[0], p[1], reach_mm * fr.k)
    if win is None:
        return None
    sl, xs, ys = win
    px, py, dx, dy, nx, ny = (float(v) for v in (p[0], p[1], d[0], d[1], n[0], n[1]))
    S = ((xs - px) * dx + (ys - py) * dy) / fr.k
    Q = ((xs - px) * nx + (ys - py) * ny) / fr.k * float(site.side)
    _, R = tube_radius(tube, float(site.t))
    to_joint = -1.0 if site.t < 0.5 else 1.0   # +S points toward the nearer end (joint)
    return sl, S, Q, float(R), to_joint


def _ell(S, Q, s0, q0, ls, lq):
    return ((S - s0) / ls) ** 2 + ((Q - q0) / lq) ** 2


def apply_lesion(L: Layers, fr: Frame, diagnosis: str, site: LesionSite, rng):
    """Modify the layers in place; return the lesion mask (bool, working resolution)."""
    R0 = tube_radius(L.placed[site.bone][2], np.float32(site.t))[1]
    reach = float(R0) * 6 + 25
    loc = _local(L, fr, site, reach)
    mask = np.zeros(L.shape, bool)
    if loc is None:
        return mask
    sl, S, Q, R, tj = loc
    S = S * tj                                   # now +S always points to the joint
    k, z = site.size, site.conspicuity
    cort, med, soft = L.cort[sl], L.med[sl], L.soft[sl]
    texel = smooth_noise(S.shape, max(0.9 * fr.k, 1.0), rng)
    m = np.zeros(S.shape, bool)

    if diagnosis == "ewing_sarcoma":
        ls = R * 3.2 * k
        zone = _ell(S, Q, 0, 0, ls, R * 1.02) <= 1
        holes = (texel > 0.3) & zone            # permeative, moth-eaten lysis
        med[holes] *= 1 - 0.75 * z
        cort[holes] *= 1 - 0.55 * z
        for j in range(1, 4):                   # onion-skin lamellae parallel to the cortex
            lam = (np.abs(np.abs(Q) - (R + j * 1.6 * k)) < 0.45) & (np.abs(S) < ls * (0.85 - 0.12 * j))
            cort[lam] += 4.0 * z
        mass_q = R + 9 * k
        mass = _ell(S, Q, 0, mass_q, ls * 0.85, 9 * k + R * 0.3) <= 1
        soft[mass] += z * 30 * np.sqrt(np.clip(1 - _ell(S, Q, 0, mass_q, ls * 0.85, 9 * k + R * 0.3)[mass], 0, 1))
        m = zone | mass | ((np.abs(Q) < R + 5.5 * k) & (np.abs(S) < ls * 0.75))
    elif diagnosis == "osteomyelitis":
        ls, lq = R * 1.6 * k, R * 0.75
        e = _ell(S, Q, 0, R * 0.1, ls, lq)
        lytic = e <= 1
        med[lytic] *= 1 - 0.8 * z
        cort[lytic & (np.abs(Q) > R * 0.6)] *= 1 - 0.5 * z
        rim = (e > 1) & (e <= 1.7)
        cort[rim] += 3.0 * z * (1.7 - e[rim])     # reactive sclerosis around the cavity
        seq = _ell(S, Q, ls * 0.2, R * 0.1, ls * 0.22, lq * 0.25) <= 1
        cort[seq] += 3.0 * z                     # dense sequestrum inside the cavity
        per = (np.abs(Q) > R) & (np.abs(Q) < R + 2.5 * k) & (np.abs(S) < ls * 2)
        cort[per] += 3.5 * z * (1 - np.abs(S[per]) / (ls * 2))
        m = (e <= 1.7) | per
    elif diagnosis == "osteosarcoma":
        ls = R * 1.8 * k
        mq = R * 0.35
        e = _ell(S, Q, 0, mq, ls, R * 1.2)
        mass = e <= 1
        cloud = np.clip(0.6 + 0.5 * texel, 0, None)
        cort[mass] += 7.0 * z * cloud[mass] * np.sqrt(1 - e[mass])   # sclerotic tumour bone
        ang = np.arctan2(S, Q - R * 0.7)         # sunburst radiating from the cortex
        rad = np.hypot(S, Q - R * 0.7)
        spic = (np.cos(ang * 30 + 0.4 * texel) > 0.3) & (rad < 16 * k) & (Q > R) & (np.abs(ang) < 1.2)
        cort[spic] += 5.0 * z * (1 - rad[spic] / (16 * k))
        tumour_soft = _ell(S, Q, 0, R, ls, 16 * k) <= 1
        soft[tumour_soft & (Q > R)] += 20.0 * z
        m = mass | (tumour_soft & (Q > R * 0.8))
    elif diagnosis == "enchondroma":
        ls, lq = R * 1.8 * k, R * 0.7
        e = _ell(S, Q, 0, 0, ls, lq)
        m = e <= 1
        med[m] *= 1 - 0.75 * z
        cort[m & (np.abs(Q) > R * 0.55)] *= 1 - 0.3 * z   # endosteal scalloping
        for _ in range(int(6 + 6 * k)):          # ring-and-arc chondroid calcifications
            s0, q0 = rng.uniform(-0.7, 0.7) * ls, rng.uniform(-0.6, 0.6) * lq
            rr = rng.uniform(0.5, 1.3) * max(R / 6, 0.6)
            ring = np.abs(np.hypot(S - s0, Q - q0) - rr) < max(rr * 0.35, 0.25)
            arc = ring & (np.arctan2(Q - q0, S - s0) > rng.uniform(-3.1, 0.5))
            cort[arc & m] += 1.4 * z
    elif diagnosis == "osteochondroma":
        # Exostosis growing out of the cortex, pointing away from the nearby joint.
        h = R * 1.6 * k + 6
        ang = math.radians(rng.uniform(35, 55))
        ds, dq = -math.sin(ang), math.cos(ang)
        tt = np.clip(((S) * ds + (Q - R * 0.6) * dq) / h, 0, 1)
        dist = np.hypot(S - tt * h * ds, Q - R * 0.6 - tt * h * dq)
        r = (R * 0.55 * (1 - tt) + R * 0.3 * tt + R * 0.25 * np.clip((tt - 0.75) / 0.25, 0, 1))
        outer, inner = _chord(r, dist), _chord(r * 0.72, dist)
        stalk = (outer > 0) & (Q > R * 0.5)
        cort[stalk] += (outer - inner)[stalk] * z * 1.4
        med[stalk] += inner[stalk] * z * 1.4
        m = stalk
    else:   # non_ossifying_fibroma: eccentric cortical, multilobulated, sclerotic scalloped rim
        ls, lq = R * 1.3 * k, R * 0.42
        e = np.minimum.reduce([_ell(S, Q, o * ls, R * 0.62 + w * lq * 0.3, ls * 0.55, lq)
                               for o, w in ((-0.5, 0.0), (0.0, 0.5), (0.5, -0.3))])
        lyt = e <= 1
        med[lyt] *= 1 - 0.8 * z
        cort[lyt] *= 1 - 0.7 * z
        rim = (e > 1) & (e <= 1.5) & (Q < R * 1.05)
        cort[rim] += 2.5 * z
        m = (e <= 1.5) & (Q < R * 1.05)
    mask[sl] = m
    return mask
