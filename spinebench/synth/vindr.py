"""Synthetic VinDr-SpineXR 1.0.0 folder (SOURCES.md 2 and 6).

Writes `vindr-spinexr-...-1.0.0/` with `annotations/{train,test}.csv` (columns study_id, series_id,
image_id, rad_id, lesion_type, xmin, ymin, xmax, ymax; 32-hex ids; one row per box; a "No finding" image
has one row with empty box cells) and `{train,test}_images/{image_id}.dicom`.

Counting. `counts["vindr_images"]` films carry at least one kept finding (Osteophytes, Disc space
narrowing, Foraminal stenosis, Spondylolysthesis [sic], Vertebral collapse) or "No finding"; about half
are "No finding". Kept findings may come with extra "Other lesions" / "Surgical implant" boxes (the
filter must drop those rows but keep the film), about a fifth of abnormal films have two kept lesion
types (exercises `multi_lesion`), most lesion types have several boxes. Every box surrounds the drawn
lesion: a spur at a body corner, a narrowed disc, a slipped pair of bodies, a short (wedged) body, a
small foramen, metal screws, a sclerotic blob.

Films: lumbar (~70%) and cervical, AP and lateral; CR or DX SOP class; no Modality tag; BitsAllocated 16,
BitsStored 12; WindowCenter/WindowWidth; about 70% JPEG 2000 lossless (1.2.840.10008.1.2.4.90), the rest
uncompressed explicit little endian; about 8% MONOCHROME1 (stored inverted, bone dark in stored
values). The first films of every archive have fixed recipes so that even a tiny archive holds each of
these cases, and the second study is always in the test split.

Decoys (`decoys=True`, all in train.csv, each film in its own study, on top of the counted films):
- unknown lesion type "Scoliosis" (the DICOM exists)            -> unknown label;
- an "Osteophytes" film whose .dicom file is missing            -> missing image;
- a "Disc space narrowing" film whose .dicom is truncated to 60% of its bytes (header readable, pixel
  data cut off)                                                  -> corrupt DICOM (render stage);
- a film whose only rows are "Other lesions"                     -> only dropped findings;
- a film whose only rows are "Surgical implant"                  -> only dropped findings.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spinebench.seeding import item_rng
from spinebench.synth import phantoms
from spinebench.synth.dicom import CR_IMAGE_STORAGE, DX_IMAGE_STORAGE_FOR_PRESENTATION, XrayImage, xray_bytes
from spinebench.synth.parallel import ordered_map
from spinebench.synth.seeding import hex_id
from spinebench.synth.writers import csv_bytes, format_coordinate

FOLDER = (
    "vindr-spinexr-a-large-annotated-medical-image-dataset-for-spinal-lesions-detection-and-classification"
    "-from-radiographs-1.0.0"
)
HEADER = ("study_id", "series_id", "image_id", "rad_id", "lesion_type", "xmin", "ymin", "xmax", "ymax")
OSTEOPHYTES = "Osteophytes"
DSN = "Disc space narrowing"
FORAMINAL = "Foraminal stenosis"
LISTHESIS = "Spondylolysthesis"  # sic: the spelling of the released CSV
COLLAPSE = "Vertebral collapse"
OTHER = "Other lesions"
IMPLANT = "Surgical implant"
NO_FINDING = "No finding"
KEPT_TYPES = (OSTEOPHYTES, DSN, FORAMINAL, LISTHESIS, COLLAPSE)
KEPT_WEIGHTS = (0.42, 0.2, 0.1, 0.12, 0.16)
UNKNOWN_TYPE = "Scoliosis"
CORRUPT_FRACTION = 0.6


@dataclass
class FilmPlan:
    """One radiograph: ids, kind, findings and file encoding."""

    image_id: str
    study_id: str
    series_id: str
    split: str
    region: str  # "lumbar" | "cervical"
    lateral: bool
    findings: list[str]  # lesion types, one entry per type (empty: No finding)
    rad_id: str
    sop_class: str
    monochrome1: bool
    jpeg2000: bool
    decoy: str | None = None


# Fixed recipes of the first films: (region, lateral, findings, monochrome1, jpeg2000, sop class).
FIXED_FILMS = (
    ("lumbar", True, [OSTEOPHYTES, DSN], False, True, CR_IMAGE_STORAGE),
    ("lumbar", False, [], True, False, DX_IMAGE_STORAGE_FOR_PRESENTATION),
    ("cervical", True, [LISTHESIS, OTHER], False, True, DX_IMAGE_STORAGE_FOR_PRESENTATION),
    ("cervical", False, [], False, True, CR_IMAGE_STORAGE),
    ("lumbar", True, [COLLAPSE, IMPLANT], False, False, CR_IMAGE_STORAGE),
    ("lumbar", True, [FORAMINAL], False, True, DX_IMAGE_STORAGE_FOR_PRESENTATION),
    ("lumbar", False, [OSTEOPHYTES], False, True, CR_IMAGE_STORAGE),
)


def study_sizes(seed: int, film_count: int) -> list[int]:
    """Films per study (1-3, mostly 2: an AP and a lateral), adding up to `film_count`."""
    sizes, total, index = [], 0, 0
    while total < film_count:
        size = int(item_rng(seed, "vindr", "study-size", index).choice([1, 2, 2, 2, 3]))
        size = min(size, film_count - total)
        sizes.append(size)
        total += size
        index += 1
    return sizes


def plan_films(seed: int, film_count: int) -> list[FilmPlan]:
    """The counted films, grouped into studies (a study has one region; the second study is test)."""
    films = []
    for study_index, size in enumerate(study_sizes(seed, film_count)):
        study_rng = item_rng(seed, "vindr", "study", study_index)
        study_id = hex_id(seed, "vindr", "study-id", study_index)
        split = "test" if study_index == 1 or (study_index > 1 and study_rng.random() < 0.2) else "train"
        region = "lumbar" if study_rng.random() < 0.7 else "cervical"
        for view in range(size):
            index = len(films)
            films.append(_plan_film(seed, index, study_id, split, region, lateral=view % 2 == 1))
    return films


def _plan_film(seed: int, index: int, study_id: str, split: str, region: str, lateral: bool) -> FilmPlan:
    rng = item_rng(seed, "vindr", "film", index)
    if index < len(FIXED_FILMS):
        region, lateral, findings, monochrome1, jpeg2000, sop_class = FIXED_FILMS[index]
        findings = list(findings)
    else:
        findings = _random_findings(rng, lateral)
        monochrome1 = bool(rng.random() < 0.08)
        jpeg2000 = bool(rng.random() < 0.7)
        sop_class = CR_IMAGE_STORAGE if rng.random() < 0.5 else DX_IMAGE_STORAGE_FOR_PRESENTATION
    return FilmPlan(
        image_id=hex_id(seed, "vindr", "image-id", index),
        study_id=study_id,
        series_id=hex_id(seed, "vindr", "series-id", index),
        split=split,
        region=region,
        lateral=lateral,
        findings=findings,
        rad_id=f"rad{int(rng.integers(1, 4))}",
        sop_class=sop_class,
        monochrome1=monochrome1,
        jpeg2000=jpeg2000,
    )


def _random_findings(rng: np.random.Generator, lateral: bool) -> list[str]:
    """Half "No finding"; otherwise one or two kept types, sometimes with dropped types beside them."""
    if rng.random() < 0.5:
        return []
    weights = np.array(KEPT_WEIGHTS)
    if not lateral:
        weights[KEPT_TYPES.index(FORAMINAL)] = 0.0  # foramina are drawn on lateral films only
    weights /= weights.sum()
    count = 2 if rng.random() < 0.2 else 1
    findings = [str(t) for t in rng.choice(KEPT_TYPES, size=count, replace=False, p=weights)]
    if rng.random() < 0.12:
        findings.append(OTHER)
    if rng.random() < 0.05:
        findings.append(IMPLANT)
    return findings


def plan_decoys(seed: int) -> list[FilmPlan]:
    """The deliberately bad films (see the module docstring)."""
    recipes = [
        ("unknown_lesion", [UNKNOWN_TYPE]),
        ("missing_dicom", [OSTEOPHYTES]),
        ("corrupt_dicom", [DSN]),
        ("dropped_only_other", [OTHER]),
        ("dropped_only_implant", [IMPLANT]),
    ]
    films = []
    for name, findings in recipes:
        film = _plan_film(
            seed, -1, hex_id(seed, "vindr", "decoy-study", name), "train", "lumbar", lateral=True
        )
        film.image_id = hex_id(seed, "vindr", "decoy-image", name)
        film.series_id = hex_id(seed, "vindr", "decoy-series", name)
        film.findings = findings
        film.decoy = name
        film.jpeg2000 = name == "corrupt_dicom" or film.jpeg2000  # a cut-off JPEG 2000 codestream
        films.append(film)
    return films


# --------------------------------------------------------------------------------------------------
# Drawing a film and its boxes
# --------------------------------------------------------------------------------------------------
LUMBAR_LEVELS = (2, 3, 3, 4, 4, 1)  # disc indices, weighted towards L4/L5 and L5/S1 (repeats = weight)
CERVICAL_LEVELS = (2, 3, 3, 4, 1)
ALL_CORNERS = (phantoms.TOP_LEFT, phantoms.BOTTOM_LEFT, phantoms.TOP_RIGHT, phantoms.BOTTOM_RIGHT)
ANTERIOR_CORNERS = (phantoms.TOP_LEFT, phantoms.BOTTOM_LEFT)


@dataclass
class RenderedFilm:
    plan: FilmPlan
    dicom: bytes
    boxes: list[tuple[str, tuple[float, float, float, float]]]


def render_film(seed: int, plan: FilmPlan) -> RenderedFilm:
    """Draw the film, place each finding on it, and encode the DICOM."""
    rng = item_rng(seed, "vindr", "pixels", plan.image_id)
    cervical = plan.region == "cervical"
    height = int(rng.integers(288, 385)) if not cervical else int(rng.integers(272, 353))
    width = int(height * rng.uniform(0.75, 0.95))
    if cervical:
        curvature = str(rng.choice(["lordotic", "lordotic", "straight", "kyphotic"]))
        spec = phantoms.cervical_spec(rng, 1.0, (0.0, 0.0), curvature, lateral=plan.lateral)
    else:
        spec = phantoms.lumbar_spec(rng, 1.0, (0.0, 0.0), lateral=plan.lateral)
    spec = phantoms.fitted(spec, height, width, fill=float(rng.uniform(0.62, 0.78)))
    levels = CERVICAL_LEVELS if cervical else LUMBAR_LEVELS

    lesions = phantoms.RadiographLesions()
    box_makers = []  # called once the column is built: each returns that finding's boxes
    for lesion_type in plan.findings:
        box_makers.append(_place_finding(rng, lesion_type, spec, lesions, levels, plan.lateral))
    column = phantoms.build_column(spec)
    boxes = []
    for lesion_type, make_boxes in zip(plan.findings, box_makers, strict=True):
        for box in make_boxes(column):
            boxes.append((lesion_type, _clip_box(box, width, height)))

    canvas = phantoms.render_radiograph(height, width, column, plan.lateral, lesions, rng)
    image = phantoms.finish_image(
        canvas, rng, blur=float(rng.uniform(0.7, 1.3)), noise=float(rng.uniform(0.008, 0.02))
    )
    peak = float(rng.uniform(2600, 4095))
    values = np.rint(image * peak).astype(np.uint16)
    stored = (np.uint16(int(peak)) - np.minimum(values, np.uint16(int(peak)))) if plan.monochrome1 else values
    low, high = np.percentile(stored, [1, 99])
    header = XrayImage(
        image_id=plan.image_id,
        study_id=plan.study_id,
        series_id=plan.series_id,
        sop_class=plan.sop_class,
        photometric="MONOCHROME1" if plan.monochrome1 else "MONOCHROME2",
        pixel_spacing=round((260.0 if cervical else 420.0) / height, 6),
        window_center=int(round((low + high) / 2)),
        window_width=max(int(round(high - low)), 1),
        patient_sex=str(rng.choice(["M", "F"])),
        patient_size=round(float(rng.uniform(1.5, 1.85)), 2),
        patient_weight=float(int(rng.uniform(45, 90))),
    )
    return RenderedFilm(plan, xray_bytes(stored, header, plan.jpeg2000), boxes)


def _place_finding(
    rng: np.random.Generator,
    lesion_type: str,
    spec: phantoms.ColumnSpec,
    lesions: phantoms.RadiographLesions,
    levels: tuple[int, ...],
    lateral: bool,
) -> Callable[[phantoms.Column], list[tuple[float, float, float, float]]]:
    """Draw one finding into the spec/lesions (before the column is built); return the function that
    boxes it on the built column."""
    names = spec.names
    disc = int(rng.choice(levels))
    margin = float(rng.uniform(2, 5))
    if lesion_type == OSTEOPHYTES:
        spurs = []
        for _ in range(int(rng.integers(1, 4))):
            vertebra = names[int(rng.integers(1, len(names) - 1))]
            # Anterior spurs are the commonest on lateral films.
            corners = ANTERIOR_CORNERS if lateral and rng.random() < 0.7 else ALL_CORNERS
            corner = int(rng.choice(corners))
            length = float(np.mean(spec.widths) * rng.uniform(0.12, 0.22))
            lesions.osteophytes.append((vertebra, corner, length))
            spurs.append((vertebra, corner, length))
        return lambda column: [
            phantoms.bounding_box(phantoms.osteophyte(column[v], c, length), margin) for v, c, length in spurs
        ]
    if lesion_type == DSN:
        spec.disc_heights[disc] *= rng.uniform(0.25, 0.45)
        return lambda column: [phantoms.bounding_box(column.disc(disc), margin)]
    if lesion_type == FORAMINAL:
        lesions.narrowed_foramina[disc] = float(rng.uniform(0.3, 0.5))
        return lambda column: [phantoms.bounding_box(phantoms.foramen_outline(column, disc, 1.0), margin)]
    if lesion_type == LISTHESIS:
        direction = -1.0 if lateral else float(rng.choice([-1.0, 1.0]))
        spec.slips[disc] = direction * float(spec.widths[disc] * rng.uniform(0.15, 0.28))
        return lambda column: [
            phantoms.bounding_box(
                np.concatenate([column.vertebrae[disc].corners, column.vertebrae[disc + 1].corners]), margin
            )
        ]
    if lesion_type == COLLAPSE:
        index = int(rng.integers(1, len(names) - 1))
        spec.collapse[index] = float(rng.uniform(0.3, 0.5))
        if lateral:
            spec.wedge[index] = float(rng.uniform(0.2, 0.45))
        return lambda column: [phantoms.bounding_box(column.vertebrae[index].corners, margin)]
    if lesion_type in (OTHER, UNKNOWN_TYPE):
        name = names[int(rng.integers(0, len(names) - 1))]
        radius = float(rng.uniform(0.15, 0.25))
        lesions.sclerotic.append((name, radius))
        return lambda column: [
            phantoms.bounding_box(
                phantoms.ellipse(
                    column[name].center, (column[name].width * radius, column[name].height * radius * 0.8)
                ),
                margin,
            )
        ]
    if lesion_type == IMPLANT:
        upper = int(rng.integers(1, len(names) - 2))
        pair = (names[upper], names[upper + 1])
        lesions.implants.append(pair)
        return lambda column: [
            phantoms.bounding_box(
                np.concatenate(phantoms.pedicle_screws(column[pair[0]], column[pair[1]], lateral)), margin
            )
        ]
    raise ValueError(f"no drawing for lesion type {lesion_type!r}")


def _clip_box(box, width: int, height: int) -> tuple[float, float, float, float]:
    xmin, ymin, xmax, ymax = box
    return max(xmin, 0.0), max(ymin, 0.0), min(xmax, width - 1.0), min(ymax, height - 1.0)


def annotation_rows(film: RenderedFilm) -> list[tuple]:
    """The CSV rows of one film: one per box, or one "No finding" row with empty box cells."""
    plan = film.plan
    ids = (plan.study_id, plan.series_id, plan.image_id, plan.rad_id)
    if not film.boxes:
        return [(*ids, NO_FINDING, None, None, None, None)]
    return [(*ids, lesion_type, *(format_coordinate(v, 6) for v in box)) for lesion_type, box in film.boxes]


def write(out_dir: Path, counts: dict, seed: int, decoys: bool, workers: int | None = None) -> None:
    """Write the VinDr folder into `out_dir` (see the module docstring)."""
    root = Path(out_dir) / FOLDER
    for sub in ("annotations", "train_images", "test_images"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    films = plan_films(seed, int(counts["vindr_images"]))
    if decoys:
        films += plan_decoys(seed)
    rows: dict[str, list[tuple]] = {"train": [], "test": []}
    for film in ordered_map(functools.partial(render_film, seed), films, workers):
        plan = film.plan
        rows[plan.split] += annotation_rows(film)
        if plan.decoy == "missing_dicom":
            continue
        data = film.dicom
        if plan.decoy == "corrupt_dicom":
            data = data[: int(len(data) * CORRUPT_FRACTION)]
        (root / f"{plan.split}_images" / f"{plan.image_id}.dicom").write_bytes(data)
    for split, split_rows in rows.items():
        (root / "annotations" / f"{split}.csv").write_bytes(csv_bytes(HEADER, split_rows))
