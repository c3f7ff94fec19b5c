"""Synthetic musculoskeletal radiograph phantoms written as real DICOM.

The embedded demo data and the test data of the whole app.  ``generate_archive``
plans patients (clinical fields drawn per diagnosis so they carry signal), studies
(AP + LAT of one region, 1-3 per patient, same lesion site) and files (centre,
transfer syntax, photometric, bits), then renders and writes them in worker
processes.  ``render_case`` turns one ``PhantomCase`` into a float image (bone
bright) and a lesion mask.  Everything is deterministic for a seed.
"""

from __future__ import annotations

import csv
import math
import multiprocessing as mp
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from mskstudio.io import phantom_anatomy as anat
from mskstudio.io.phantom_regions import LAYOUTS
from mskstudio.jobs import JobContext

REGIONS = ("hand", "wrist_forearm", "elbow", "shoulder_humerus", "pelvis_hip", "femur", "knee",
           "lower_leg", "ankle_foot", "spine")
NON_MSK = ("chest", "abdomen", "screenshot", "blank")
DIAGNOSES = ("healthy", "ewing_sarcoma", "osteomyelitis", "osteosarcoma", "enchondroma",
             "osteochondroma", "non_ossifying_fibroma")
LESIONS = DIAGNOSES[1:]
DIGNITY = {"healthy": "none", "osteomyelitis": "none", "ewing_sarcoma": "malignant",
           "osteosarcoma": "malignant", "enchondroma": "benign", "osteochondroma": "benign",
           "non_ossifying_fibroma": "benign"}
# Where each lesion lives (region weights) and on which part of the bone.
LESION_REGIONS = {
    "ewing_sarcoma": {"femur": 3, "lower_leg": 2, "shoulder_humerus": 2, "pelvis_hip": 1, "wrist_forearm": 1},
    "osteosarcoma": {"knee": 4, "shoulder_humerus": 2, "femur": 2, "lower_leg": 1},
    "osteomyelitis": {"lower_leg": 2, "ankle_foot": 2, "femur": 1, "knee": 1, "hand": 1, "wrist_forearm": 1,
                      "elbow": 1},
    "enchondroma": {"hand": 5, "shoulder_humerus": 1, "femur": 1, "knee": 1},
    "osteochondroma": {"knee": 4, "shoulder_humerus": 2, "femur": 1, "lower_leg": 1, "wrist_forearm": 1},
    "non_ossifying_fibroma": {"knee": 3, "lower_leg": 3, "femur": 1, "ankle_foot": 1},
}
POSITIONS = {"ewing_sarcoma": {"diaphysis": 0.8, "metaphysis": 0.2}, "osteosarcoma": {"metaphysis": 1.0},
             "osteomyelitis": {"metaphysis": 0.55, "diaphysis": 0.35, "epiphysis": 0.1},
             "enchondroma": {"diaphysis": 0.6, "metaphysis": 0.4}, "osteochondroma": {"metaphysis": 1.0},
             "non_ossifying_fibroma": {"metaphysis": 0.7, "diaphysis": 0.3}}
MIDLINE = {"spine", "pelvis_hip", "chest", "abdomen", "screenshot", "blank"}
SIZES = {"small": (256, 384), "medium": (900, 1150), "full": (2000, 3000)}
MANIFEST_COLUMNS = ["file", "sop_uid", "patient_key", "study_uid", "centre", "region", "is_msk", "view",
                    "laterality", "diagnosis", "dignity", "position", "mask", "box_x0", "box_y0", "box_x1",
                    "box_y1", "spacing_mm", "transfer_syntax", "photometric", "bits_stored"]


@dataclass(frozen=True)
class PhantomCase:
    """One image's ground truth (the manifest fields) plus the knobs that render it."""

    region: str
    view: str = "AP"
    laterality: str = "R"
    diagnosis: str = "healthy"
    dignity: str = "none"
    position: str = ""
    is_msk: int = 1
    centre: str = "centre_a"
    file: str = ""
    sop_uid: str = ""
    patient_key: str = ""
    study_uid: str = ""
    mask: str = ""
    box: tuple | None = None
    spacing_mm: float = 0.0
    transfer_syntax: str = ""
    photometric: str = "MONOCHROME2"
    bits_stored: int = 12
    # rendering knobs (not in the manifest)
    seed: int = 0
    patient_scale: float = 1.0      # overall body size
    bone_scale: float = 1.0         # bone thickness relative to the body
    rotation_deg: float = 0.0
    zoom: float = 1.0               # field of view / anatomy size
    exposure: float = 1.0
    collimate: bool = False
    lesion_bone: str = ""
    lesion_side: int = 1
    lesion_size: float = 1.0
    lesion_conspicuity: float = 0.8
    lesion_jitter: float = 0.0


def _fov(case: PhantomCase) -> tuple[float, float]:
    if case.region in LAYOUTS:
        return LAYOUTS[case.region](case.view, np.random.default_rng(0), 1.0).fov
    return (400.0, 320.0) if case.region == "screenshot" else (350.0, 430.0)


def _lesion_t(layout, case: PhantomCase) -> float:
    """Position label -> t along the bone, kept inside the visible part of the tube."""
    tube = next(p for p in layout.prims if getattr(p, "name", "") == case.lesion_bone)
    je = layout.sites[case.lesion_bone]
    ts = np.linspace(0, 1, 201)
    a, b = np.array(tube.a, float), np.array(tube.b, float)
    pts = a[None] + ts[:, None] * (b - a)[None]
    w, h = layout.fov
    vis = ts[(pts[:, 0] > 0.1 * w) & (pts[:, 0] < 0.9 * w) & (pts[:, 1] > 0.1 * h) & (pts[:, 1] < 0.9 * h)]
    lo, hi = (vis.min(), vis.max()) if len(vis) else (0.0, 1.0)
    toward = 1.0 if je == 0.0 else -1.0              # direction from the joint into the shaft
    off = {"epiphysis": 0.035, "metaphysis": 0.13, "diaphysis": 0.45}.get(case.position, 0.45)
    t = je + toward * (off + 0.03 * case.lesion_jitter)
    return float(np.clip(t, lo, hi))


def render_case(case: PhantomCase, shape: tuple[int, int], rng) -> tuple[np.ndarray, np.ndarray | None]:
    """Render one image (float32 0..1, bone bright) and its lesion mask (bool) or None."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    h, w = shape
    if case.region == "screenshot":
        return anat.screenshot(shape, rng), None
    if case.region == "blank":
        level = rng.choice([0.02, 0.95]) if rng.random() < 0.8 else rng.uniform(0.3, 0.6)
        img = level + 0.05 * np.linspace(-1, 1, w, dtype=np.float32)[None, :] * rng.uniform(-1, 1)
        return np.clip(img + rng.normal(0, 0.01, shape).astype(np.float32), 0, 1).astype(np.float32), None
    layout = LAYOUTS[case.region](case.view, rng, float(case.bone_scale))
    fw, fh = layout.fov
    mmpp = max(fw / w, fh / h) * case.zoom                  # mm per output pixel
    f = min(1.0, 560.0 / max(h, w))                         # draw at <= ~560 px, upsample after
    ws = (max(int(round(h * f)), 8), max(int(round(w * f)), 8))
    shift = rng.uniform(-0.04, 0.04, 2) * np.array([fw, fh])
    fr = anat.Frame(layout.fov, ws, mmpp / f, case.patient_scale, case.rotation_deg,
                    mirror=case.laterality == "L", shift_mm=shift)
    L = anat.draw_layout(layout, fr, ws)
    mask = None
    if case.diagnosis in LESIONS and case.lesion_bone in L.placed:
        site = anat.LesionSite(case.lesion_bone, _lesion_t(layout, case), case.lesion_side,
                               case.lesion_size, case.lesion_conspicuity)
        mask = anat.apply_lesion(L, fr, case.diagnosis, site, rng)
    trab = anat.trabecular(ws, fr.mmpp, rng)
    att = 0.007 * L.soft + 0.07 * L.cort + 0.022 * L.med * (1.0 + 0.3 * trab)
    # Vendor dynamic-range compression: subtract part of the very low frequencies so thick
    # soft tissue (pelvis, thigh) does not swamp the bone contrast.
    att = np.maximum(att - 0.45 * anat.blur(att, 40), 0)
    ref = float(np.percentile(att[::4, ::4], 99.7)) + 1e-3
    g = 2.4 * float(case.exposure)
    img = ((1 - np.exp(-g * att / ref)) / (1 - math.exp(-g))).astype(np.float32)
    from mskstudio.io.phantom_dicom import CENTRES  # centre look: scatter, vendor processing, tone
    c = CENTRES[case.centre]
    img = img * (1 - c.scatter) + c.scatter * anat.blur(img, 24)  # all python floats: stay float32
    img = img + c.edge * (img - anat.blur(img, 6))
    img = np.clip(img, 0, 1) ** c.gamma
    img += (c.noise * (0.6 + 0.8 * (1 - img)) * rng.standard_normal(ws, dtype=np.float32))
    if case.collimate:                                      # unexposed borders read bright
        m = rng.uniform(0.02, 0.09, 4)
        yy, xx = np.mgrid[0: ws[0], 0: ws[1]]
        inside = (xx > m[0] * ws[1]) & (xx < (1 - m[1]) * ws[1]) & (yy > m[2] * ws[0]) & (yy < (1 - m[3]) * ws[0])
        img = np.where(inside, img, 0.82 + 0.04 * anat.smooth_noise(ws, 40, rng))
        if mask is not None:
            mask &= inside
    if case.region not in ("chest", "abdomen") or rng.random() < 0.7:
        anat.burn_marker(img, case.laterality or ("R" if rng.random() < 0.5 else "L"),
                         fr.mmpp / case.patient_scale, rng)
    img = np.clip(img, 0, 1).astype(np.float32)
    if ws != (h, w):
        img = np.asarray(Image.fromarray(img, "F").resize((w, h), Image.BICUBIC))
        img = img + (c.noise * 0.5) * rng.standard_normal((h, w), dtype=np.float32)
        if mask is not None:
            mk = Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.BILINEAR)
            mask = np.asarray(mk) > 127
    if mask is not None and not mask.any():
        mask = None
    return np.clip(img, 0, 1).astype(np.float32), mask


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight box (x0, y0, x1, y1), inclusive pixel coordinates."""
    ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1])


def read_manifest(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))




# ---------------------------------------------------------------- planning
def _age(diagnosis, rng):
    lo, hi = {"ewing_sarcoma": (5, 25), "osteomyelitis": (1, 80), "enchondroma": (20, 50),
              "osteochondroma": (10, 30), "non_ossifying_fibroma": (8, 20), "healthy": (5, 85)}.get(diagnosis, (10, 25))
    if diagnosis == "osteosarcoma" and rng.random() < 0.2:
        lo, hi = 60, 80                                   # second peak (Paget, post-radiation)
    return int(rng.integers(lo, hi + 1))


# Each centre's laboratory uses its own kit, as real multi-centre data has: other units
# (SI µkat/L, mg/dL) and other reference ranges.  ``scale`` turns the canonical value
# (centre_a's kit) into the kit's unit and calibration, so a value divided by its own
# kit's upper limit reads the same everywhere while the raw numbers do not.
LAB_KITS = {
    "centre_a": {"ALP": ("U/L", 40, 130, 1.0), "LDH": ("U/L", 135, 225, 1.0),
                 "CRP": ("mg/L", 0, 5, 1.0), "WBC": ("10^9/L", 4, 10, 1.0)},
    "centre_b": {"ALP": ("µkat/L", 0.6, 2.3, 2.3 / 130), "LDH": ("µkat/L", 2.0, 4.1, 4.1 / 225),
                 "CRP": ("mg/dL", 0, 0.5, 0.1), "WBC": ("10^9/L", 4.5, 11, 1.1)},
    "centre_c": {"ALP": ("U/L", 35, 105, 105 / 130), "LDH": ("U/L", 105, 205, 205 / 225),
                 "CRP": ("mg/L", 0, 10, 2.0), "WBC": ("10^9/L", 3.5, 8.8, 0.88)},
}


def _labs(diagnosis, age, rng, centre="centre_a"):
    """ALP/LDH/CRP/WBC in the ``centre``'s lab kit (unit, normal range); some values missing."""
    alp = rng.normal(85, 20) * (2.0 if age < 18 else 1.0)      # growing children run high
    ldh, crp, wbc = rng.normal(180, 30), math.exp(rng.normal(math.log(2), 0.8)), rng.normal(7, 1.5)
    if diagnosis == "osteosarcoma":
        alp *= rng.uniform(1.5, 4.0)
        ldh *= 1.2
    elif diagnosis == "ewing_sarcoma":
        ldh *= rng.uniform(1.4, 2.6)
        crp, wbc = math.exp(rng.normal(math.log(12), 0.7)), rng.normal(8.5, 2)
    elif diagnosis == "osteomyelitis":
        crp, wbc = math.exp(rng.normal(math.log(45), 0.6)), rng.normal(13, 3)
    out = {}
    kit = LAB_KITS[centre]
    for name, v in (("ALP", alp), ("LDH", ldh), ("CRP", crp), ("WBC", wbc)):
        unit, lo, hi, scale = kit[name]
        value = max(v, 0.1) * scale
        out.update({f"lab_{name}": "" if rng.random() < 0.15 else f"{value:.{3 if value < 10 else 1}f}",
                    f"lab_{name}_unit": unit, f"lab_{name}_low": lo, f"lab_{name}_high": hi})
    return out


class _Deck:
    """Cycles through shuffled items so even a small archive covers every category."""

    def __init__(self, items, rng):
        self.items, self.rng, self.left = list(items), rng, []

    def draw(self):
        if not self.left:
            self.left = [self.items[i] for i in self.rng.permutation(len(self.items))]
        return self.left.pop()


def _choice(rng, weights: dict):
    keys = list(weights)
    p = np.array([weights[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _shape(region, view, size, rng):
    lo, hi = SIZES[size]
    fw, fh = _fov(PhantomCase(region=region, view=view))
    long = int(rng.integers(lo, hi + 1))
    short = int(long * min(fw, fh) / max(fw, fh) * rng.uniform(0.95, 1.1))
    return (long, short) if fh >= fw else (short, long)


def plan_archive(n_images, seed, size, non_msk_fraction=0.08, lesion_fraction=0.35):
    """Every file of the archive as a job dict (case, patient, study, shape...) + clinical rows."""
    from mskstudio.io.phantom_dicom import CENTRES, SYNTAXES, fake_patient, make_uid

    rng = np.random.default_rng([seed, 1])
    lesions, healthy, junk = _Deck(LESIONS, rng), _Deck(REGIONS, rng), _Deck(NON_MSK, rng)
    jobs, clinical, n_lesion, n_junk = [], [], 0, 0
    while len(jobs) < n_images:
        pi = len(clinical)
        diag = lesions.draw() if n_lesion < lesion_fraction * (len(jobs) + 1) else "healthy"
        region = _choice(rng, LESION_REGIONS[diag]) if diag != "healthy" else healthy.draw()
        age, sex = _age(diag, rng), ("M" if rng.random() < (0.6 if DIGNITY[diag] == "malignant" else 0.5) else "F")
        year0 = int(rng.integers(2012, 2023))
        patient = fake_patient(rng, pi, sex,
                               f"{year0 - age}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}", seed)
        sites = sorted(LAYOUTS[region]("AP", rng, 1.0).sites)
        pos = _choice(rng, POSITIONS[diag]) if diag != "healthy" else ""
        knobs = dict(patient_scale=rng.uniform(0.85, 1.12), bone_scale=rng.uniform(0.9, 1.1),
                     lesion_bone=str(rng.choice(sites)) if diag != "healthy" else "",
                     lesion_side=int(rng.choice([-1, 1])), lesion_size=rng.uniform(0.75, 1.25),
                     lesion_conspicuity=rng.uniform(0.45, 1.0), lesion_jitter=rng.uniform(-1, 1))
        knobs = {k: (v if isinstance(v, str) else float(v) if k != "lesion_side" else int(v)) for k, v in knobs.items()}
        home, lat = str(rng.choice(list(CENTRES))), ("" if region in MIDLINE else str(rng.choice(["L", "R"])))
        src = {"malignant": {"histology": 0.9, "tumour_board": 0.1},
               "benign": {"follow_up": 0.5, "histology": 0.3, "tumour_board": 0.2}}
        source = _choice(rng, src.get(DIGNITY[diag], {"histology": 0.4, "tumour_board": 0.3, "follow_up": 0.3})
                         if diag != "healthy" else {"follow_up": 1})
        clinical.append({"patient_id": patient["id"], "age": age, "sex": sex, "site": region, "position": pos,
                         "diagnosis": diag, "dignity": DIGNITY[diag], "diagnosis_source": source,
                         **_labs(diag, age, rng, home)})
        studies = [(region, v) for _ in range(int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))) for v in ("AP", "LAT")]
        if n_junk < non_msk_fraction * (len(jobs) + len(studies)):
            kind = junk.draw()
            studies.append((kind, "PA" if kind == "chest" else "AP"))
            n_junk += 1
        for si, (reg, view) in enumerate(studies):
            if len(jobs) >= n_images:
                break
            st = si // 2 if reg == region else len(studies)
            msk = reg in REGIONS
            month = st * int(rng.integers(2, 8))
            study = {"date": f"{year0 + (month // 12)}{month % 12 + 1:02d}{int(rng.integers(1, 29)):02d}",
                     "time": f"{int(rng.integers(7, 19)):02d}{int(rng.integers(0, 60)):02d}00",
                     "accession": f"ACC{seed % 100:02d}{pi:05d}{st:02d}", "age": age + month // 12,
                     "description": f"XR {reg.replace('_', ' ').upper()} {'2 VIEWS' if msk else ''}".strip(),
                     "indication": "pain and swelling, rule out tumour" if st == 0 else "follow-up"}
            centre = home if rng.random() < 0.85 else str(rng.choice(list(CENTRES)))
            c = CENTRES[centre]
            syntax = _choice(rng, SYNTAXES)
            bits = c.bits_stored if rng.random() < 0.8 else int(rng.choice([12, 14, 16]))
            idx = len(jobs)
            fname = f"{view}_{idx:05d}.dcm" if rng.random() < 0.75 else f"IM{idx:06d}"
            case = PhantomCase(
                region=reg, view=view, laterality=lat if msk else "", is_msk=int(msk), centre=centre,
                diagnosis=diag if msk else "", dignity=DIGNITY[diag] if msk else "", position=pos if msk else "",
                file=f"dicom/{patient['id']}/S{st:02d}/{fname}", sop_uid=make_uid(seed, "sop", idx),
                patient_key=patient["id"], study_uid=make_uid(seed, "study", pi, st), transfer_syntax=syntax,
                photometric="MONOCHROME1" if rng.random() < c.mono1_prob else "MONOCHROME2", bits_stored=bits,
                seed=idx, rotation_deg=float(rng.uniform(-15, 15)), zoom=float(rng.uniform(0.95, 1.15)),
                exposure=float(rng.uniform(0.75, 1.3)), collimate=bool(rng.random() < c.collimate_prob),
                **(knobs if msk and diag != "healthy" else {k: v for k, v in knobs.items() if "lesion" not in k}))
            # A few signed images (PixelRepresentation 1), only in the native syntaxes.
            signed = syntax in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2") and bits < 16 and rng.random() < 0.2
            jobs.append({"case": case, "patient": patient, "study": study, "shape": _shape(reg, view, size, rng),
                         "series_uid": make_uid(seed, "series", idx), "series_number": 1 + si % 2, "instance": 1,
                         "signed": bool(signed), "seed": seed})
        n_lesion += (sum(1 for j in jobs if j["case"].patient_key == patient["id"] and j["case"].is_msk)
                     if diag != "healthy" else 0)
    return jobs, clinical


# ---------------------------------------------------------------- writing
def render_job(job: dict):
    """Planned file -> (case with spacing, float image, stored integers, slope, intercept, mask, rng).

    Deterministic, so tests can recompute the exact array a file was encoded from."""
    from mskstudio.io.phantom_dicom import to_stored

    case = job["case"]
    rng = np.random.default_rng([job["seed"], case.seed, 7])
    img, mask = render_case(case, job["shape"], rng)
    fw, fh = _fov(case)
    case = replace(case, spacing_mm=round(max(fw / img.shape[1], fh / img.shape[0]) * case.zoom, 4))
    stored, slope, intercept = to_stored(img, case.bits_stored, case.photometric == "MONOCHROME1", job["signed"], rng)
    return case, img, stored, slope, intercept, mask, rng


def _write_one(job: dict) -> dict:
    """Worker: render, encode and write one file (+ its mask); return its manifest row."""
    from mskstudio.io.phantom_dicom import CENTRES, build_dataset, write_dataset

    out = Path(job["out_dir"])
    case, _, stored, slope, intercept, mask, rng = render_job(job)
    ds = build_dataset(stored, case=case, centre=CENTRES[case.centre], patient=job["patient"], study=job["study"],
                       series_uid=job["series_uid"], series_number=job["series_number"],
                       instance=job["instance"], slope=slope, intercept=intercept, rng=rng)
    path = out / case.file
    path.parent.mkdir(parents=True, exist_ok=True)
    write_dataset(ds, stored, path, case.transfer_syntax)
    if mask is not None:
        case = replace(case, mask=f"masks/{Path(case.file).parent.parent.name}_{case.sop_uid[-12:]}.png",
                       box=mask_box(mask))
        Image.fromarray(mask.astype(np.uint8) * 255).save(out / case.mask, optimize=False)
    row = {k: v for k, v in asdict(case).items() if k in MANIFEST_COLUMNS}
    box = case.box or ("", "", "", "")
    row.update(dict(zip(("box_x0", "box_y0", "box_x1", "box_y1"), box, strict=False)))
    return row


def generate_archive(out_dir: Path, n_images: int = 600, seed: int = 0, size: str = "full", workers: int = 2,
                     ctx: JobContext | None = None, non_msk_fraction: float = 0.08,
                     lesion_fraction: float = 0.35) -> Path:
    """Write ``n_images`` DICOM files under ``out_dir/dicom`` plus masks/, manifest.csv and
    clinical.csv; returns the manifest path.  Deterministic for a seed (any worker count)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    ctx = ctx or JobContext.null()
    out = Path(out_dir)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    ctx.progress(0.0, "planning phantom archive")
    jobs, clinical = plan_archive(int(n_images), int(seed), size, non_msk_fraction, lesion_fraction)
    for j in jobs:
        j["out_dir"] = str(out)
    rows = []

    def collect(results):
        for i, row in enumerate(results):
            rows.append(row)
            ctx.progress((i + 1) / len(jobs), f"phantom {i + 1}/{len(jobs)}")
            ctx.check_cancelled()

    if workers <= 1 or len(jobs) < 8:
        collect(_write_one(j) for j in jobs)
    else:
        with mp.get_context("spawn").Pool(min(workers, len(jobs))) as pool:   # exit terminates on cancel
            collect(pool.imap(_write_one, jobs, chunksize=2))
    with open(out / "clinical.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(clinical[0]))
        w.writeheader()
        w.writerows(clinical)
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    ctx.progress(1.0, f"wrote {len(rows)} phantom images")
    return manifest


def make_contact_sheet(out_png: Path, seed: int = 0) -> Path:
    """One labelled tile per region (AP and LAT), non-MSK type and lesion type (box in red)."""
    from PIL import ImageDraw, ImageFont

    typical = {"ewing_sarcoma": ("femur", "femur", "diaphysis"), "osteomyelitis": ("lower_leg", "tibia", "metaphysis"),
               "osteosarcoma": ("knee", "femur", "metaphysis"), "enchondroma": ("hand", "f2_1", "diaphysis"),
               "osteochondroma": ("knee", "tibia", "metaphysis"),
               "non_ossifying_fibroma": ("lower_leg", "tibia", "metaphysis")}
    tiles = [PhantomCase(r, view=v) for v in ("AP", "LAT") for r in REGIONS]
    tiles += [PhantomCase(r, laterality="", is_msk=0) for r in NON_MSK]
    tiles += [PhantomCase(r, diagnosis=d, dignity=DIGNITY[d], position=p, lesion_bone=b, lesion_conspicuity=0.9,
                          centre="centre_c") for d, (r, b, p) in typical.items()]
    T, cols = 220, 10
    sheet = Image.new("RGB", (cols * T, -(-len(tiles) // cols) * (T + 14)), (20, 20, 20))
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default(size=11)
    for i, case in enumerate(tiles):
        rng = np.random.default_rng([seed, i])
        shape = _shape(case.region, case.view, "medium", rng)
        img, mask = render_case(case, (shape[0] // 2, shape[1] // 2), rng)
        tile = Image.fromarray((img * 255).astype(np.uint8)).convert("RGB")
        s = T / max(tile.size)
        tile = tile.resize((max(int(tile.width * s), 1), max(int(tile.height * s), 1)), Image.LANCZOS)
        x, y = (i % cols) * T + (T - tile.width) // 2, (i // cols) * (T + 14)
        sheet.paste(tile, (x, y))
        if mask is not None:
            x0, y0, x1, y1 = (int(v * s) for v in mask_box(mask))
            draw.rectangle([x + x0, y + y0, x + x1, y + y1], outline=(255, 40, 40))
        label = (case.diagnosis if case.diagnosis not in ("healthy", "")
                 else f"{case.region} {case.view if case.is_msk else ''}")
        draw.text(((i % cols) * T + 4, y + T + 1), label, fill=(255, 220, 120), font=font)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.convert("P", palette=Image.ADAPTIVE, colors=96).save(out_png, optimize=True)
    return out_png
