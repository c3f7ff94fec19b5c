"""Bone layouts of the phantom regions, in millimetres, for AP and lateral views.

Each layout is a list of primitives (``Tube`` long bones with flared ends, ``Blob``
ellipses / rounded boxes for carpals, vertebrae, heads...) plus soft-tissue envelopes,
inside a field of view.  ``sites`` names the long bones a lesion may sit in and which
end of the tube (t=0 or t=1) is the joint shown in the image, so that "metaphysis"
means the end near the visible joint.  Sizes are adult textbook values with per-image
jitter; the lateral view superimposes bones the way a lateral projection does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Tube:
    name: str
    a: tuple
    b: tuple
    r0: float
    r1: float
    ct: float = 1.5          # cortical thickness (mm)
    fa: float = 0.0          # extra radius flaring at end a (metaphysis/epiphysis)
    fb: float = 0.0
    dens: float = 1.0
    layer: str = "bone"


@dataclass
class Blob:
    name: str
    c: tuple
    ax: float
    ay: float
    ang: float = 0.0
    ct: float = 1.2
    p: float = 2.0           # 2 = ellipse, 4 = rounded box (vertebral body)
    dens: float = 1.0
    depth: float | None = None   # thickness along the beam, defaults to the small semi-axis
    layer: str = "bone"


@dataclass
class Layout:
    fov: tuple               # (width_mm, height_mm)
    prims: list = field(default_factory=list)
    sites: dict = field(default_factory=dict)   # bone name -> joint end t (0.0 or 1.0)


def _soft(name, a, b, r0, r1=None, dens=1.0):
    return Tube(name, a, b, r0, r1 if r1 is not None else r0, layer="soft", dens=dens)


def _sblob(name, c, ax, ay, depth, dens=1.0, ang=0.0):
    return Blob(name, c, ax, ay, ang=ang, depth=depth, dens=dens, layer="soft")


def _chain(prefix, start, ang_deg, lengths, radii, flex=0.0, gap=2.0, ct=1.2):
    """A ray of bones (metacarpal + phalanges) separated by joint spaces."""
    out, (x, y), a = [], start, math.radians(ang_deg)
    for i, (ln, r) in enumerate(zip(lengths, radii, strict=False)):
        dx, dy = math.sin(a), -math.cos(a)
        end = (x + dx * ln, y + dy * ln)
        out.append(Tube(f"{prefix}{i}", (x, y), end, r, r * 0.8, ct=ct, fa=r * 0.35, fb=r * 0.25))
        x, y = end[0] + dx * gap, end[1] + dy * gap
        a += math.radians(flex)
    return out, (x, y)


def _carpals(cx, cy, s=1.0, flip=1):
    spec = [(-18, 10, 9, 6, -30), (-2, 11, 8, 7, 0), (13, 8, 7, 6, 0), (20, 4, 5, 5, 0),
            (-24, -7, 7, 7, 0), (-11, -9, 6, 6, 0), (2, -8, 7, 10, 0), (16, -6, 8, 8, 0)]
    return [Blob(f"carpal{i}", (cx + dx * s, cy + flip * dy * s), ax * s, ay * s, ang, ct=1.0)
            for i, (dx, dy, ax, ay, ang) in enumerate(spec)]


def hand(view, rng, k):
    if view == "AP":
        p = [Tube("radius", (78, 300), (80, 222), 9 * k, 10 * k, 2.5, fb=9 * k),
             Tube("ulna", (122, 300), (118, 228), 6 * k, 7 * k, 2, fb=2 * k),
             _sblob("palm", (103, 165), 40, 38, 16), _soft("wrist", (100, 300), (100, 200), 33, 30)]
        p += _carpals(101, 203, k)
        bx, by = [74, 90, 104, 117, 129], [190, 182, 181, 183, 187]
        angs = [-42, -8, 0, 7, 15]
        for i in range(5):
            a = angs[i] + rng.uniform(-4, 4)
            ln = [45, 32, 24] if i == 0 else [[68, 42, 25, 18], [65, 45, 28, 19], [58, 42, 27, 19],
                                              [53, 34, 20, 17]][i - 1]
            rad = [5.5, 5.0, 4.0] if i == 0 else [4.6, 4.3, 3.5, 3.0]
            bones, tip = _chain(f"f{i}_", (bx[i], by[i]), a, [v * k for v in ln],
                                [v * k for v in rad], flex=rng.uniform(-2, 2))
            p += bones
            p.append(_soft(f"finger{i}", bones[1].a, tip, 9.5 * k if i == 0 else 8.5 * k))
        return Layout((190, 240), p, {"f1_0": 1.0, "f2_0": 1.0, "f3_0": 1.0, "f1_1": 0.0,
                                      "f2_1": 0.0, "f4_1": 0.0, "f3_2": 0.0})
    p = [Tube("radius", (92, 300), (94, 222), 9 * k, 10 * k, 2.5, fb=7 * k),
         Tube("ulna", (100, 300), (99, 228), 6 * k, 7 * k, 2, fb=2 * k),
         _sblob("palm", (100, 170), 22, 45, 55), _soft("wrist", (96, 300), (96, 200), 26, 24)]
    p += [Blob(f"carpal{i}", (95 + 6 * math.cos(i), 200 - 3 * i), 12 * k, 9 * k, 20, ct=1.2, dens=0.8)
          for i in range(4)]
    for i in range(1, 5):
        ln = [[68, 42, 25, 18], [65, 45, 28, 19], [58, 42, 27, 19], [53, 34, 20, 17]][i - 1]
        bones, tip = _chain(f"f{i}_", (96 + i * 1.5, 186), -4 + i * 2.0, [v * k for v in ln],
                            [4.6 * k, 4.3 * k, 3.5 * k, 3.0 * k], flex=8 + rng.uniform(0, 12))
        p += bones
    p.append(_soft("fingers", (100, 180), bones[-1].b, 12 * k))
    thumb, tip = _chain("f0_", (88, 190), -38, [45 * k, 32 * k, 24 * k], [5.5 * k, 5 * k, 4 * k])
    p += thumb + [_soft("thumb", thumb[0].a, tip, 10 * k)]
    return Layout((190, 240), p, {"f1_0": 1.0, "f2_0": 1.0, "f3_0": 1.0, "f1_1": 0.0,
                                  "f2_1": 0.0, "f4_1": 0.0, "f3_2": 0.0})


def wrist_forearm(view, rng, k):
    ap = view == "AP"
    rx, ux = (62, 112) if ap else (80, 90)
    p = [Tube("radius", (rx, 62), (rx + (16 if ap else 2), 360), 8 * k, 8 * k, 3, fa=10 * k, fb=3 * k),
         Tube("ulna", (ux, 66), (ux - (16 if ap else 4), 360), 5.5 * k, 8 * k, 2.5, fa=2 * k, fb=5 * k),
         _soft("forearm", (86, 10), (86, 360), 32 * k, 40 * k)]
    p += _carpals(88, 40, 1.1 * k, flip=-1) if ap else [
        Blob(f"carpal{i}", (86 + 4 * i, 40 - 2 * i), 16 * k, 10 * k, 10, dens=0.8) for i in range(3)]
    for i in range(4):
        x = (60 + 16 * i) if ap else (80 + 3 * i)
        p.append(Tube(f"mc{i}", (x, 22), (x - (6 - 4 * i) * ap, -40), 5 * k, 4.5 * k, 1.5, fa=1.5))
    return Layout((170, 330), p, {"radius": 0.0, "ulna": 0.0})


def elbow(view, rng, k):
    if view == "AP":
        p = [Tube("humerus", (95, -100), (95, 106), 11 * k, 12 * k, 3.5, fb=18 * k),
             Blob("condyles", (95, 116), 33 * k, 11 * k, 0, ct=1.5, p=2.5),
             Tube("radius", (78, 134), (70, 340), 9 * k, 7.5 * k, 2.5, fa=3 * k),
             Tube("ulna", (108, 126), (118, 340), 11 * k, 6 * k, 2.5, fa=4 * k),
             Blob("olecranon", (106, 113), 10 * k, 9 * k, ct=1.5, dens=0.8),
             _soft("arm", (95, -100), (95, 340), 44 * k, 38 * k)]
        return Layout((190, 240), p, {"humerus": 1.0, "radius": 0.0, "ulna": 0.0})
    bend = rng.uniform(-10, 10)
    c, s = math.cos(math.radians(bend)), math.sin(math.radians(bend))
    fx = lambda d: (92 + d * c, 135 + d * s)  # noqa: E731 - forearm points along the flexed axis
    p = [Tube("humerus", (80, -100), (86, 110), 11 * k, 12 * k, 3.5, fb=8 * k),
         Blob("condyles", (90, 122), 15 * k, 15 * k, ct=1.5),
         Tube("ulna", fx(-14), fx(230), 10 * k, 6 * k, 2.5, fa=3 * k),
         Blob("olecranon", (70, 128), 11 * k, 13 * k, ct=1.5),
         Tube("radius", (100, 118), (322, 122 + 230 * s), 8 * k, 7.5 * k, 2.5, fa=3 * k),
         _soft("upper", (82, -100), (86, 130), 42 * k, 40 * k), _soft("fore", fx(-10), fx(250), 38 * k, 30 * k)]
    return Layout((240, 240), p, {"humerus": 1.0, "radius": 0.0, "ulna": 0.0})


def shoulder_humerus(view, rng, k):
    if view == "AP":
        p = [Blob("head", (95, 55), 24 * k, 24 * k, ct=2.0), Blob("glenoid", (66, 60), 8, 22, -10, dens=0.8),
             Blob("scapula", (38, 115), 38, 75, 12, ct=1.5, depth=6), Tube("acromion", (40, 22), (112, 24), 7, 7, 2),
             Tube("clavicle", (240, 2), (100, 16), 8, 8, 2.5), Blob("coracoid", (92, 42), 12, 6, 20),
             _soft("chestwall", (-20, 0), (-10, 380), 60, 60, 0.8), _sblob("deltoid", (95, 70), 55, 60, 45)]
    else:
        p = [Tube("scap_body", (55, 190), (88, 62), 11, 8, 2, dens=0.8), Tube("acromion", (88, 62), (60, 14), 7, 7, 2),
             Tube("coracoid", (90, 60), (132, 36), 6, 5, 2), Blob("head", (94, 62), 24 * k, 24 * k, ct=2.0),
             _soft("chestwall", (-10, 0), (20, 380), 60, 60, 0.8), _sblob("deltoid", (95, 70), 50, 60, 50)]
    p += [Tube("humerus", (98, 58), (112, 372), 14 * k, 11 * k, 4, fa=9 * k, fb=14 * k),
          _soft("arm", (100, 40), (112, 420), 45 * k, 38 * k)]
    for i in range(4):                      # ribs of the chest wall at the film edge
        p.append(Tube(f"rib{i}", (0, 120 + 40 * i), (45, 150 + 40 * i), 5, 5, 1.5, dens=0.7))
    return Layout((240, 380), p, {"humerus": 0.0})


def _hip_side(sx, cx, k, suffix):
    """One side of the pelvis + proximal femur; sx = +1 right of midline, -1 left."""
    X = lambda d: cx + sx * d  # noqa: E731
    return [Blob("ilium" + suffix, (X(95), 80), 72, 55, -25 * sx, ct=2.0, depth=7),
            Blob("acetab" + suffix, (X(82), 148), 26, 12, 0, ct=2.5),
            Blob("fhead" + suffix, (X(86), 166), 22 * k, 22 * k, ct=2.0),
            Tube("fneck" + suffix, (X(90), 170), (X(115), 200), 13 * k, 15 * k, 2.5),
            Blob("gtroch" + suffix, (X(128), 194), 14 * k, 19 * k, ct=1.5),
            Tube("femur" + suffix, (X(118), 190), (X(108), 420), 15 * k, 13 * k, 4.5, fa=8 * k),
            Tube("supramus" + suffix, (X(72), 176), (X(12), 204), 8, 7, 2),
            Tube("infram" + suffix, (X(58), 240), (X(12), 226), 7, 7, 2),
            Blob("ischium" + suffix, (X(62), 222), 15, 22, 10 * sx, ct=2)]


def pelvis_hip(view, rng, k):
    if view == "AP":
        p = [Blob("L5", (190, 22), 26, 15, p=4, depth=20), Blob("sacrum", (190, 88), 42, 55, p=2.5, depth=14),
             _sblob("body", (190, 170), 200, 190, 110)]
        p += _hip_side(-1, 190, k, "_r") + _hip_side(+1, 190, k, "_l")
        return Layout((380, 300), p, {"femur_r": 0.0})
    p = [Blob("pelvis", (95, 110), 75, 85, 20, ct=2.5, depth=25), Blob("fhead", (150, 140), 23 * k, 23 * k, ct=2),
         Tube("fneck", (150, 140), (190, 170), 14 * k, 15 * k, 2.5),
         Tube("femur_r", (185, 160), (235, 400), 15 * k, 13 * k, 4.5, fa=8 * k),
         _sblob("body", (150, 170), 170, 190, 120)]
    return Layout((300, 300), p, {"femur_r": 0.0})


def femur(view, rng, k):
    ap = view == "AP"
    p = [Blob("acetab", (125, 18), 30, 14, ct=2.5), Blob("fhead", (118 if ap else 100, 30), 22 * k, 22 * k, ct=2),
         Tube("fneck", (115 if ap else 98, 35), (85 if ap else 92, 66), 14 * k, 15 * k, 2.5),
         Blob("gtroch", (72 if ap else 90, 62), 14 * k, 18 * k, ct=1.5),
         Tube("femur", (85 if ap else 92, 55), (100 if ap else 88, 425), 15 * k, 13 * k, 4.5, fa=8 * k, fb=22 * k),
         _soft("thigh", (95, 10), (100, 470), 72 * k, 55 * k)]
    if ap:
        p += [Blob("condyles", (100, 440), 38 * k, 13 * k, p=2.5, ct=2), Blob("plateau", (100, 466), 38 * k, 8 * k)]
    else:
        p += [Blob("condyles", (80, 440), 24 * k, 22 * k, ct=2), Blob("patella", (124, 428), 9 * k, 21 * k, 8),
              Blob("plateau", (92, 468), 30 * k, 9 * k, 8)]
    return Layout((200, 460), p, {"femur": 1.0})


def knee(view, rng, k):
    if view == "AP":
        p = [Tube("femur", (100, -150), (100, 100), 14 * k, 14 * k, 4, fb=24 * k),
             Blob("condyle_m", (78, 106), 19 * k, 14 * k, ct=2), Blob("condyle_l", (122, 106), 19 * k, 14 * k, ct=2),
             Tube("tibia", (100, 128), (98, 400), 17 * k, 14 * k, 4, fa=22 * k),
             Tube("fibula", (143, 142), (140, 400), 7 * k, 5 * k, 2, fa=3.5 * k),
             Blob("patella", (100, 88), 22 * k, 26 * k, depth=8, dens=0.35),
             _soft("leg", (100, -50), (100, 330), 60 * k, 50 * k)]
        return Layout((200, 250), p, {"femur": 1.0, "tibia": 0.0, "fibula": 0.0})
    flex = rng.uniform(0, 15)
    tb = (100 + 270 * math.sin(math.radians(flex)), 400)
    p = [Tube("femur", (95, -150), (95, 98), 14 * k, 14 * k, 4, fb=14 * k),
         Blob("condyles", (88, 108), 26 * k, 24 * k, ct=2), Blob("patella", (142, 98), 10 * k, 22 * k, 8, ct=2),
         Tube("tibia", (92, 130), tb, 17 * k, 14 * k, 4, fa=18 * k),
         Tube("fibula", (76, 145), (tb[0] - 18, 400), 6 * k, 5 * k, 2, fa=3 * k),
         _soft("leg", (95, -50), (95, 120), 58 * k, 55 * k), _soft("calf", (92, 120), tb, 55 * k, 40 * k)]
    return Layout((220, 250), p, {"femur": 1.0, "tibia": 0.0, "fibula": 0.0})


def lower_leg(view, rng, k):
    ap = view == "AP"
    fx = (130, 120) if ap else (70, 80)
    p = [Tube("femur", (90, -100), (90, 10), 14 * k, 14 * k, 4, fb=22 * k),
         Tube("tibia", (90, 32), (86 if ap else 98, 400), 14 * k, 11 * k, 4.5, fa=20 * k, fb=10 * k),
         Tube("fibula", (fx[0], 46), (fx[1], 408), 6 * k, 5.5 * k, 2, fa=3 * k, fb=5 * k),
         Blob("talus", (86 if ap else 100, 420), 24 * k, 12 * k, ct=2),
         _soft("leg", (90, 0), (88, 440), 55 * k, 33 * k)]
    if not ap:
        p.append(Blob("patella", (130, 0), 10 * k, 20 * k, 8))
    return Layout((180, 430), p, {"tibia": 0.0, "fibula": 1.0})


def ankle_foot(view, rng, k):
    if view == "AP":
        p = [Tube("tibia", (95, -200), (95, 150), 12 * k, 12 * k, 3.5, fb=12 * k),
             Tube("malleolus", (70, 140), (72, 172), 7 * k, 6 * k, 2),
             Tube("fibula", (142, -200), (138, 180), 5 * k, 6 * k, 2, fb=3 * k),
             Blob("talus", (100, 172), 27 * k, 14 * k, p=2.5, ct=2),
             Blob("calcaneus", (100, 214), 30 * k, 20 * k, dens=0.7),
             _soft("ankle", (98, -50), (98, 260), 38 * k, 40 * k)]
        return Layout((200, 240), p, {"tibia": 1.0, "fibula": 1.0})
    p = [Tube("tibia", (95, -200), (95, 86), 12 * k, 12 * k, 3.5, fb=12 * k),
         Tube("fibula", (108, -200), (106, 100), 5 * k, 6 * k, 2, fb=3 * k),
         Blob("talus", (105, 113), 28 * k, 17 * k, ct=2), Blob("calcaneus", (74, 150), 42 * k, 22 * k, -15, ct=2),
         Blob("navicular", (145, 122), 9 * k, 13 * k), Blob("cuboid", (140, 152), 14 * k, 12 * k),
         Blob("cuneiform", (170, 128), 13 * k, 15 * k), _soft("leg", (98, -50), (98, 110), 38 * k, 40 * k),
         _sblob("foot", (160, 140), 130, 40, 60, ang=8)]
    for i in range(4):
        y = 130 + 6 * i
        p += [Tube(f"mt{i}", (182, y), (255, y + 30 - 4 * i), 5 * k, 4 * k, 1.5, fa=2),
              Tube(f"ph{i}", (259, y + 31 - 4 * i), (288, y + 34 - 4 * i), 4, 3, 1.2)]
    return Layout((300, 210), p, {"tibia": 1.0, "fibula": 1.0})


def spine(view, rng, k):
    p, n = [], 8
    curve = rng.uniform(-8, 8)
    for i in range(n):
        yc = 35 + i * 50 * k
        if view == "AP":
            xc = 100 + curve * math.sin(i / n * math.pi)
            p += [Blob(f"body{i}", (xc, yc), 25 * k, 16 * k, p=4, ct=1.8, depth=30, dens=1.6),
                  Blob(f"ped{i}a", (xc - 17 * k, yc - 5), 4.5, 7, ct=1.5),
                  Blob(f"ped{i}b", (xc + 17 * k, yc - 5), 4.5, 7, ct=1.5),
                  Blob(f"spin{i}", (xc, yc + 10), 4, 9, ct=1.2),
                  Tube(f"tpa{i}", (xc - 20, yc), (xc - 45, yc - 3), 4, 3, 1.2),
                  Tube(f"tpb{i}", (xc + 20, yc), (xc + 45, yc - 3), 4, 3, 1.2)]
        else:
            xc = 85 + 10 * math.sin(i / (n - 1) * math.pi)
            p += [Blob(f"body{i}", (xc, yc), 18 * k, 16 * k, p=4, ct=1.8, depth=35, dens=1.6),
                  Tube(f"lam{i}", (xc + 18, yc - 5), (xc + 40, yc), 5, 4, 1.5),
                  Tube(f"spin{i}", (xc + 40, yc), (xc + 62, yc + 8), 5, 4, 1.5)]
    p.append(_sblob("trunk", (100, 215), 150 if view == "AP" else 110, 280, 120, 0.6))
    return Layout((200, 430), p, {})


def chest(view, rng, k):
    p = [_sblob("body", (200, 235), 195, 230, 110), _sblob("lung_r", (125, 200), 72, 150, 80, -0.9, -4),
         _sblob("lung_l", (278, 200), 66, 145, 80, -0.9, 4), _sblob("heart", (218, 285), 78, 66, 60, 0.8),
         _soft("mediast", (200, 30), (200, 300), 26, 30, 0.6)]
    for i in range(10):
        y0 = 62 + i * 25
        for sx in (-1, 1):
            pts = [(200 + sx * 14, y0), (200 + sx * 105, y0 - 10), (200 + sx * 168, y0 + 25), (200 + sx * 150, y0 + 75)]
            p += [Tube(f"rib{i}{sx}{j}", pts[j], pts[j + 1], 5 * k, 5 * k, 1.6, dens=0.8) for j in range(3)]
    p += [Tube("clav_r", (185, 60), (70, 42), 7, 7, 2), Tube("clav_l", (215, 60), (330, 42), 7, 7, 2)]
    p += [Blob(f"vert{i}", (200, 30 + 34 * i), 16, 12, p=4, depth=12, dens=0.6) for i in range(12)]
    return Layout((400, 430), p, {})


def abdomen(view, rng, k):
    p = [_sblob("body", (190, 215), 185, 240, 130), _sblob("liver", (120, 90), 85, 60, 60, 0.35)]
    p += [Blob(f"vert{i}", (190, 40 + 48 * i), 24, 16, p=4, depth=30, dens=1.4) for i in range(7)]
    p += [Blob("ilium_r", (95, 380), 72, 50, -25, ct=2, depth=7),
          Blob("ilium_l", (285, 380), 72, 50, 25, ct=2, depth=7),
          Tube("rib11", (170, 30), (60, 70), 5, 5, 1.5), Tube("rib12", (210, 30), (320, 70), 5, 5, 1.5)]
    for i in range(int(rng.integers(12, 26))):     # bowel gas
        c = (rng.uniform(80, 300), rng.uniform(130, 360))
        p.append(_sblob(f"gas{i}", c, rng.uniform(6, 22), rng.uniform(5, 14), 25, -1.2, rng.uniform(0, 180)))
    return Layout((380, 430), p, {})


LAYOUTS = {f.__name__: f for f in (hand, wrist_forearm, elbow, shoulder_humerus, pelvis_hip, femur, knee,
                                    lower_leg, ankle_foot, spine, chest, abdomen)}
