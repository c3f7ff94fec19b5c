"""DICOM SR measurement reports (TID 1500) of an image's measurements, written by highdicom.

One Comprehensive 3D SR per image that has something to report, under ``sr/<image uid>.dcm``.
Its measurement groups, each referencing the source image (the stored de-identified file,
see ``sources``):

* ruler -> planar ROI (TID 1410), a 2-point POLYLINE, Length (SCT 410668003) in mm;
* angle -> planar ROI, a 3-point POLYLINE (vertex second), Angle (SCT 1483009) in degrees;
* lesion mask (the best per class, as in the SEG) -> measurement group (TID 1501) with
  Long axis (SCT 103339001, the maximum Feret diameter) in mm and Area (SCT 42798000) in mm²;
* lesion box -> planar ROI, a closed 5-point POLYLINE, its class as finding type and as a
  qualitative evaluation;
* classifier prediction -> measurement group with the algorithm (run name, version), the
  predicted class as a qualitative evaluation and its Probability (DCM 122157).

Without a pixel spacing, lengths and areas are given in pixels (UCUM annotation ``{pixels}``)
rather than left out.  Coordinates are image pixels, (column, row), origin at the top-left
corner of the top-left pixel — the viewer's convention and DICOM's SCOORD one.
The tracking identifier of each group names what it is and who made it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.io.exports.seg_write import property_type, segments_of_image
from mskstudio.io.exports.sources import derived_uid, source_dataset

if TYPE_CHECKING:
    from mskstudio.domain import Box, Mask
    from mskstudio.store import Project

SR_SERIES_NUMBER = 901
PRIVATE_SCHEME = "99MSKSTUDIO"  # local codes for the project's own label sets and classes


def _pixels_unit():
    from highdicom.sr import CodedConcept

    return CodedConcept(value="{pixels}", scheme_designator="UCUM", meaning="pixels")


def _class_concept(class_id: int, name: str):
    from highdicom.sr import CodedConcept

    return CodedConcept(value=f"C{class_id}", scheme_designator=PRIVATE_SCHEME, meaning=str(name)[:64])


def classifier_predictions(project: Project) -> list[tuple[Any, dict[int, Any]]]:
    """(run row, {image id: prediction row}) of every classifier run with stored predictions."""
    out = []
    for run in project.models.list("classifier"):
        rows = project.models.predictions(run["id"])
        if rows:
            out.append((run, {int(r["image_id"]): r for r in rows}))
    return out


class ReportBuilder:
    """The measurement groups of one image; ``build`` makes the SR dataset."""

    def __init__(self, project: Project, image_id: int):
        import highdicom as hd

        self.hd = hd
        self.project = project
        self.image = project.images.record(image_id)
        self.source = source_dataset(project, self.image)
        self.groups: list[Any] = []
        self.counts = {"rulers": 0, "angles": 0, "lesions": 0, "boxes": 0, "classifications": 0}
        self.stamp: list[str] = []  # what the report holds: an unchanged report keeps its UID

    # ---- references -------------------------------------------------------------------
    def _ref(self, cls):
        """A reference of type ``cls`` to the source image (its frame, in a multi-frame object)."""
        frames = [self.image.frame + 1] if self.image.n_frames > 1 else None
        return cls(self.source.SOPClassUID, self.source.SOPInstanceUID, referenced_frame_numbers=frames)

    def _region(self, points: list[tuple[float, float]]):
        hd = self.hd
        return hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=np.asarray(points, dtype=float),
            source_image=self._ref(hd.sr.SourceImageForRegion),
        )

    def _image_ref(self):
        return self._ref(self.hd.sr.SourceImageForMeasurement)

    def _group_images(self):
        return [self._ref(self.hd.sr.SourceImageForMeasurementGroup)]

    def _tracking(self, text: str, *key: Any):
        return self.hd.sr.TrackingIdentifier(uid=derived_uid(self.project, "sr-tracking", *key), identifier=text[:64])

    # ---- content ----------------------------------------------------------------------
    def add_measurement(self, m: dict[str, Any]) -> None:
        """A ruler or an angle drawn in the viewer."""
        from pydicom.sr.codedict import codes

        hd = self.hd
        points = [(float(x), float(y)) for x, y in m["points"]]
        if m["kind"] == "ruler":
            value, unit = ((m["length_mm"], codes.UCUM.Millimeter) if m["length_mm"] is not None
                           else (m["length_px"], _pixels_unit()))
            measurement = hd.sr.Measurement(codes.SCT.Length, float(value), unit)
        else:
            measurement = hd.sr.Measurement(codes.SCT.Angle, float(m["angle_deg"]), codes.UCUM.Degree)
        self.groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=self._tracking(f"{m['kind']} {m['id']} by {m['author']}", "measurement", m["id"]),
            referenced_region=self._region(points),
            measurements=[measurement],
        ))
        self.counts["rulers" if m["kind"] == "ruler" else "angles"] += 1
        self.stamp.append(f"m{m['id']}@{m['updated_at']}")

    def add_lesion(self, row: Mask) -> None:
        """Longest diameter and area of a lesion mask (values the store computed at save time)."""
        from pydicom.sr.codedict import codes

        hd = self.hd
        ref = [self._image_ref()]
        if row.longest_mm is not None and row.area_mm2 is not None:
            measurements = [
                hd.sr.Measurement(codes.SCT.LongAxis, float(row.longest_mm), codes.UCUM.Millimeter,
                                  referenced_images=ref),
                hd.sr.Measurement(codes.SCT.Area, float(row.area_mm2), codes.UCUM.SquareMillimeter,
                                  referenced_images=ref),
            ]
        else:
            from mskstudio.imaging.masks import max_feret

            longest_px = max_feret(self.project.annotations.load_mask(row.id))
            measurements = [
                hd.sr.Measurement(codes.SCT.LongAxis, float(longest_px), _pixels_unit(), referenced_images=ref),
                hd.sr.Measurement(codes.SCT.Area, float(row.area_px), _pixels_unit(), referenced_images=ref),
            ]
        algorithm = None
        if row.source == "model":
            algorithm = self._algorithm(row.run_id, "segmenter")
        self.groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=self._tracking(
                f"{row.class_name} mask by {row.annotator} ({row.source})", "mask", row.id),
            finding_category=codes.SCT.MorphologicallyAbnormalStructure,
            finding_type=property_type(row.class_name),
            algorithm_id=algorithm,
            measurements=measurements,
            qualitative_evaluations=[hd.sr.QualitativeEvaluation(
                self._set_concept(row.class_id), _class_concept(row.class_id, row.class_name))],
            source_images=self._group_images(),
        ))
        self.counts["lesions"] += 1
        self.stamp.append(f"k{row.id}@{row.updated_at}")

    def add_box(self, box: Box) -> None:
        from pydicom.sr.codedict import codes

        hd = self.hd
        x0, y0, x1, y1 = box.rect
        self.groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=self._tracking(
                f"{box.class_name} box by {box.annotator} ({box.source})", "box", box.id),
            referenced_region=self._region([(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]),
            finding_category=codes.SCT.MorphologicallyAbnormalStructure,
            finding_type=property_type(box.class_name),
            qualitative_evaluations=[hd.sr.QualitativeEvaluation(
                self._set_concept(box.class_id), _class_concept(box.class_id, box.class_name))],
        ))
        self.counts["boxes"] += 1
        self.stamp.append(f"b{box.id}@{box.updated_at}")

    def add_classification(self, run: Any, prediction: Any) -> None:
        """A classifier's predicted class and its probability."""
        from pydicom.sr.codedict import codes

        hd = self.hd
        if prediction["class_id"] is None:
            return
        class_name = self.project.labels.class_name(int(prediction["class_id"])) or f"class {prediction['class_id']}"
        probability = prediction["confidence"]
        if probability is None and prediction["probs"]:
            probability = json.loads(prediction["probs"]).get(str(prediction["class_id"]))
        label_set = self._set_concept(int(prediction["class_id"]))
        measurements = []
        if probability is not None:
            measurements.append(hd.sr.Measurement(codes.DCM.Probability, float(probability), codes.UCUM.NoUnits,
                                                  referenced_images=[self._image_ref()]))
        self.groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=self._tracking(f"{class_name} by {run['name']}", "prediction", run["id"],
                                               self.image.id),
            algorithm_id=self._algorithm(run["id"], "classifier"),
            qualitative_evaluations=[hd.sr.QualitativeEvaluation(
                label_set, _class_concept(int(prediction["class_id"]), class_name))],
            measurements=measurements or None,
            source_images=self._group_images(),
        ))
        self.counts["classifications"] += 1
        self.stamp.append(f"p{run['id']}@{prediction['created_at']}")

    def _set_concept(self, class_id: int):
        """The label set of a class as the concept name of a qualitative evaluation (its value: the class)."""
        from highdicom.sr import CodedConcept

        set_id = self.project.labels.label_set_of_class(class_id)
        name = self.project.labels.label_set_name(set_id) if set_id is not None else None
        return CodedConcept(value=f"LS{set_id}", scheme_designator=PRIVATE_SCHEME, meaning=str(name or "labels")[:64])

    def _algorithm(self, run_id: int | None, kind: str):
        from mskstudio import __version__

        run = self.project.models.get(run_id) if run_id is not None else None
        name = (run["name"] if run is not None else None) or f"mskstudio {kind} run {run_id}"
        arch = run["arch"] if run is not None else "unknown"
        return self.hd.sr.AlgorithmIdentification(name=str(name)[:64],
                                                  version=f"run {run_id} {arch} mskstudio {__version__}"[:64])

    # ---- the document -----------------------------------------------------------------
    def build(self):
        from pydicom.sr.codedict import codes

        from mskstudio import __version__

        hd = self.hd
        report = hd.sr.MeasurementReport(
            observation_context=hd.sr.ObservationContext(
                observer_device_context=hd.sr.ObserverContext(
                    observer_type=codes.DCM.Device,
                    observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                        uid=derived_uid(self.project, "sr-device"), name="mskstudio", manufacturer_name="mskstudio",
                        model_name=f"mskstudio {__version__}"[:64]),
                )),
            procedure_reported=codes.SCT.ImagingProcedure,
            imaging_measurements=self.groups,
            title=codes.cid7021.ImagingMeasurementReport,
        )
        return hd.sr.Comprehensive3DSR(
            evidence=[self.source],
            content=report[0],
            series_instance_uid=derived_uid(self.project, "sr-series", self.image.sop_uid, self.image.frame),
            series_number=SR_SERIES_NUMBER,
            sop_instance_uid=derived_uid(self.project, "sr-instance", self.image.sop_uid, self.image.frame,
                                         *self.stamp),
            instance_number=1,
            manufacturer="mskstudio",
            series_description="mskstudio measurements",
        )


def build_report(project: Project, image_id: int, *, predictions: list | None = None):
    """(SR dataset or None when there is nothing to report, counts) of one image."""
    b = ReportBuilder(project, image_id)
    for m in project.measurements.for_image(image_id):
        b.add_measurement(m)
    for row in segments_of_image(project.annotations.masks_of(image_id)):
        b.add_lesion(row)
    for box in project.annotations.boxes_of(image_id):
        b.add_box(box)
    for run, by_image in (predictions if predictions is not None else classifier_predictions(project)):
        if image_id in by_image:
            b.add_classification(run, by_image[image_id])
    return (b.build() if b.groups else None), b.counts


def write_report(project: Project, image_id: int, path: Path, *, predictions: list | None = None) -> dict[str, int]:
    """Write the SR of one image to ``path`` (nothing when there is nothing to report); returns counts
    (``files``: 1 when written)."""
    sr, counts = build_report(project, image_id, predictions=predictions)
    counts["files"] = int(sr is not None)
    if sr is None:
        return counts
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    sr.save_as(tmp, enforce_file_format=True)
    tmp.replace(path)
    return counts


def report_image_ids(project: Project, predictions: list) -> list[int]:
    """Images with a measurement, a mask, a box or a prediction."""
    ids = {int(m["image_id"]) for m in project.measurements.listing()}
    ids |= {r.image_id for r in project.annotations.all_masks()}
    ids |= {b.image_id for b in project.annotations.all_boxes()}
    for _run, by_image in predictions:
        ids |= set(by_image)
    return sorted(ids)
