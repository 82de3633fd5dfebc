"""Synthetic CSXA (Cervical Spine X-ray Atlas) files (SOURCES.md 4 and 6).

Writes `datasets-PNG.zip` (`datasets-PNG/{NNNN}{AAA}.png`, 8-bit grey lateral cervical films),
`datasets-JSON.zip` (`datasets-JSON/{NNNN}{AAA}.json`, LabelMe 5 files with 23 point shapes labelled
exactly as in the authors' code: "C2 centroid", "C2 bottom left", "C2 bottom right", then "C3 top left",
"C3 top right", "C3 bottom left", "C3 bottom right" ... up to "C7 bottom right"; points are the body
corners drawn in the PNG, "left" meaning image left = anterior) and
`datasets.xlsx` (Sheet1: a title row, then the header on row 2: Number, Gender, Age,
"Curvature: 1.Lordotic, 2.Straight, 3.Sigmoid1, 4.Sigmoid2, 5.Kyphotic", Disease).

Counting. `counts["csxa_images"]` cases have a PNG and an xlsx row with a curvature 1..5 (the first five
cases cover all five classes; then roughly 45/25/10/8/12%). The drawn C2-C7 centre line follows the
class (lordotic bows anterior, kyphotic posterior, sigmoid 1/2 are S / reverse-S). Not decoys: the file
name age differs from the sheet age for every 15th case (always the third), so cases must be linked by
the 4-digit number; some shapes are single-point "polygon"s; the second case's JSON labels its
"C3 top left" point "C3 top right" (23 shapes, one label duplicated, as in the real 2548130.json).

imageData (issue 6: the real LabelMe files may carry the image rather than null; the JSON zip, 1.4 GB
beside 1.3 GB of PNGs, says nearly all do): the base64 of the case's PNG file bytes, exactly as LabelMe
embeds an image, in every JSON except those of cases numbered 1, 11, 21, ... (about 10%, the first case
always), whose imageData is null. So both forms occur in any archive of two or more cases.

Decoys (`decoys=True`):
- an xlsx row (number N+1) with no PNG and no JSON          -> missing image;
- a PNG and JSON (number N+2) with no xlsx row               -> unlabelled image;
- one counted case (the fourth, or the last when N < 4) has no JSON: kept under the default
  `require_landmarks: false` (it still counts), rejected under `require_landmarks: true`.
"""

from __future__ import annotations

import base64
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spinebench.seeding import item_rng
from spinebench.synth import phantoms
from spinebench.synth.parallel import ordered_map
from spinebench.synth.writers import DeterministicZip, png_bytes, xlsx_bytes

PNG_ZIP, JSON_ZIP, SHEET = "datasets-PNG.zip", "datasets-JSON.zip", "datasets.xlsx"
CURVATURE_COLUMN = "Curvature: 1.Lordotic, 2.Straight, 3.Sigmoid1, 4.Sigmoid2, 5.Kyphotic"
SHEET_HEADER = ("Number", "Gender", "Age", CURVATURE_COLUMN, "Disease")
SHEET_TITLE = "Cervical Spine X-ray Atlas (CSXA): clinical information"
CURVATURES = ("lordotic", "straight", "sigmoid1", "sigmoid2", "kyphotic")  # codes 1..5
CURVATURE_WEIGHTS = (0.45, 0.25, 0.10, 0.08, 0.12)
LABELME_VERSION = "5.2.1"
AGE_MISMATCH_EVERY = 15
# Cases numbered 1, 11, 21, ... keep imageData null; every other JSON embeds its PNG.
NULL_IMAGE_DATA_EVERY = 10


def landmark_labels() -> list[str]:
    """The 23 landmark labels in the authors' order."""
    labels = ["C2 centroid", "C2 bottom left", "C2 bottom right"]
    for vertebra in ("C3", "C4", "C5", "C6", "C7"):
        labels += [
            f"{vertebra} {corner}" for corner in ("top left", "top right", "bottom left", "bottom right")
        ]
    return labels


@dataclass(frozen=True)
class CasePlan:
    number: int
    age: int
    file_age: int  # the age written into the file name (usually = age)
    gender: str
    curvature: int  # 1..5
    disease: str

    @property
    def stem(self) -> str:
        return f"{self.number:04d}{self.file_age:03d}"


def plan_cases(seed: int, case_count: int) -> list[CasePlan]:
    """Cases 1..case_count; the first five cover the five curvature classes."""
    cases = []
    for number in range(1, case_count + 1):
        rng = item_rng(seed, "csxa", "case", number)
        curvature = number if number <= 5 else int(rng.choice(5, p=CURVATURE_WEIGHTS)) + 1
        age = int(rng.integers(18, 86))
        mismatch = number == 3 or number % AGE_MISMATCH_EVERY == 0
        cases.append(
            CasePlan(
                number=number,
                age=age,
                file_age=age + 1 if mismatch else age,
                gender=str(rng.choice(["Male", "Female"])),
                curvature=curvature,
                disease="Healthy" if rng.random() < 0.04 else "Cervical spondylosis",
            )
        )
    return cases


@dataclass
class RenderedCase:
    plan: CasePlan
    png: bytes
    labelme: bytes


def render_case(seed: int, case: CasePlan) -> RenderedCase:
    """Draw the lateral film along the case's curvature and write its LabelMe landmarks."""
    rng = item_rng(seed, "csxa", "image", case.number)
    height = int(rng.integers(300, 361))
    width = int(height * rng.uniform(0.8, 0.95))
    spec = phantoms.cervical_spec(rng, 1.0, (0.0, 0.0), CURVATURES[case.curvature - 1], lateral=True)
    column = phantoms.build_column(phantoms.fitted(spec, height, width, fill=float(rng.uniform(0.6, 0.72))))
    canvas = phantoms.render_radiograph(height, width, column, True, phantoms.RadiographLesions(), rng)
    image = phantoms.finish_image(
        canvas, rng, blur=float(rng.uniform(0.8, 1.3)), noise=float(rng.uniform(0.01, 0.025))
    )
    png = png_bytes(phantoms.to_uint(image, 8))
    points = landmark_points(column)
    labels = landmark_labels()
    if case.number == 2:
        labels[labels.index("C3 top left")] = "C3 top right"  # the real atlas has one such file
    polygon_shapes = (
        {int(i) for i in rng.choice(len(labels), size=2, replace=False)} if rng.random() < 0.3 else set()
    )
    labelme = {
        "version": LABELME_VERSION,
        "flags": {},
        "shapes": [
            {
                "label": label,
                "points": [[round(float(x), 4), round(float(y), 4)]],
                "group_id": None,
                "description": "",
                "shape_type": "polygon" if index in polygon_shapes else "point",
                "flags": {},
            }
            for index, (label, (x, y)) in enumerate(zip(labels, points, strict=True))
        ],
        "imagePath": f"{case.stem}.png",
        "imageData": labelme_image_data(case, png),
        "imageHeight": height,
        "imageWidth": width,
    }
    text = json.dumps(labelme, indent=2, ensure_ascii=False) + "\n"
    return RenderedCase(case, png, text.encode("utf-8"))


def labelme_image_data(case: CasePlan, png: bytes) -> str | None:
    """LabelMe's imageData: the base64 (standard alphabet, padded) of the image file's bytes, or None
    for the cases that keep it null (see the module docstring)."""
    if case.number % NULL_IMAGE_DATA_EVERY == 1:
        return None
    return base64.b64encode(png).decode("ascii")


def landmark_points(column: phantoms.Column) -> list[np.ndarray]:
    """Points in landmark_labels() order: C2 centroid and inferior corners, then 4 corners of C3-C7."""
    c2 = column["C2"].corners
    points = [column["C2"].center, c2[phantoms.BOTTOM_LEFT], c2[phantoms.BOTTOM_RIGHT]]
    for vertebra in column.vertebrae[1:]:
        corners = vertebra.corners
        points += [corners[phantoms.TOP_LEFT], corners[phantoms.TOP_RIGHT]]
        points += [corners[phantoms.BOTTOM_LEFT], corners[phantoms.BOTTOM_RIGHT]]
    return points


def sheet_row(case: CasePlan) -> tuple:
    return (case.number, case.gender, case.age, case.curvature, case.disease)


def write(out_dir: Path, counts: dict, seed: int, decoys: bool, workers: int | None = None) -> None:
    """Write the two zips and the sheet into `out_dir` (see the module docstring)."""
    out_dir = Path(out_dir)
    cases = plan_cases(seed, int(counts["csxa_images"]))
    imaged = list(cases)
    sheet_rows = [sheet_row(case) for case in cases]
    without_json: set[int] = set()
    if decoys:
        extra = item_rng(seed, "csxa", "decoys")
        sheet_only = CasePlan(
            len(cases) + 1, int(extra.integers(18, 86)), 0, "Female", 1, "Cervical spondylosis"
        )
        sheet_rows.append(sheet_row(sheet_only))
        image_only = CasePlan(len(cases) + 2, 47, 47, "Male", 2, "Cervical spondylosis")
        imaged.append(image_only)
        if cases:
            without_json.add(cases[min(3, len(cases) - 1)].number)
    with DeterministicZip(out_dir / PNG_ZIP) as png_zip, DeterministicZip(out_dir / JSON_ZIP) as json_zip:
        png_zip.add_directory("datasets-PNG/")
        json_zip.add_directory("datasets-JSON/")
        for rendered in ordered_map(functools.partial(render_case, seed), imaged, workers):
            stem = rendered.plan.stem
            png_zip.add(f"datasets-PNG/{stem}.png", rendered.png, compress=False)
            if rendered.plan.number not in without_json:
                json_zip.add(f"datasets-JSON/{stem}.json", rendered.labelme)
    (out_dir / SHEET).write_bytes(xlsx_bytes("Sheet1", [(SHEET_TITLE,), SHEET_HEADER, *sheet_rows]))
