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

Films follow the real files (SOURCES.md 2.4 and what the real sample films show): lumbar (~70%) and
cervical, AP and lateral; CR or DX SOP class; no Modality tag; BitsAllocated 16, BitsStored 12;
JPEG 2000 lossless (1.2.840.10008.1.2.4.90) MONOCHROME2; WindowCenter/WindowWidth spanning the whole
12-bit range (2047.5/4095, or a centre near 2100 and a width near 4000), so that DICOM windowing is a
plain linear map; about a quarter of the films with wide black collimation borders (8-20% of the
pixels, never over a box); PatientSize and PatientWeight "0"; PixelAspectRatio on the first (CR) film
only. Two fixed films keep what the sample did not show but a real archive may hold, so that the
decoder's other paths stay exercised: one MONOCHROME1 film stored uncompressed (explicit little endian)
and, among the decoys, the truncated codestream.
Film size (`film_size`): `compact` films are 272-384 pixels high (the demo and the tests);
`realistic` films are 1,485-2,949 pixels high at about 0.14 mm, the real films' sizes, for benchmarks.
The first films of every archive have fixed recipes so that even a tiny archive holds each of these
cases, and the second study is always in the test split.

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
    ("lumbar", True, [COLLAPSE, IMPLANT], False, True, CR_IMAGE_STORAGE),
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
        monochrome1, jpeg2000 = False, True
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


# Film heights in pixels per `film_size`, and the pixel spacing of realistic films (mm).
FILM_HEIGHTS = {"compact": {"lumbar": (288, 385), "cervical": (272, 353)}, "realistic": (1485, 2950)}
REALISTIC_SPACING = 0.139
# The window of most real films, and the share of films with collimation borders.
FULL_RANGE_WINDOW = (2047.5, 4095.0)
COLLIMATED_SHARE = 0.25
BITS_STORED = 12


def film_shape(rng: np.random.Generator, region: str, film_size: str) -> tuple[int, int, float]:
    """(height, width, pixel spacing in mm) of one film."""
    if film_size == "realistic":
        height = int(rng.integers(*FILM_HEIGHTS["realistic"]))
        spacing = round(REALISTIC_SPACING * float(rng.uniform(0.98, 1.02)), 6)
    elif film_size == "compact":
        height = int(rng.integers(*FILM_HEIGHTS["compact"][region]))
        spacing = round((260.0 if region == "cervical" else 420.0) / height, 6)
    else:
        raise ValueError(f"film_size must be compact or realistic, got {film_size!r}")
    return height, int(height * rng.uniform(0.75, 0.95)), spacing


def render_film(seed: int, plan: FilmPlan, film_size: str = "compact") -> RenderedFilm:
    """Draw the film, place each finding on it, and encode the DICOM."""
    rng = item_rng(seed, "vindr", "pixels", plan.image_id)
    cervical = plan.region == "cervical"
    height, width, spacing = film_shape(rng, plan.region, film_size)
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
    # Blur and noise in compact-film pixels: a realistic film is the same anatomy at a finer sampling.
    detail = height / 330.0 if film_size == "realistic" else 1.0
    image = phantoms.finish_image(
        canvas, rng, blur=float(rng.uniform(0.7, 1.3)) * detail, noise=float(rng.uniform(0.008, 0.02))
    )
    presented = _presentation(image, rng)
    if rng.random() < COLLIMATED_SHARE:
        _collimate(presented, rng, keep=_extent(column, [box for _, box in boxes]))
    values = phantoms.to_uint(presented, BITS_STORED)
    stored = np.uint16((1 << BITS_STORED) - 1) - values if plan.monochrome1 else values
    center, window_width = (
        FULL_RANGE_WINDOW
        if rng.random() < 0.6
        else (float(rng.integers(2000, 2151)), float(rng.integers(3900, 4096)))
    )
    header = XrayImage(
        image_id=plan.image_id,
        study_id=plan.study_id,
        series_id=plan.series_id,
        sop_class=plan.sop_class,
        photometric="MONOCHROME1" if plan.monochrome1 else "MONOCHROME2",
        pixel_spacing=spacing,
        window_center=center,
        window_width=window_width,
        patient_sex=str(rng.choice(["M", "F"])),
        pixel_aspect_ratio=plan.image_id == hex_id(seed, "vindr", "image-id", 0),
    )
    return RenderedFilm(plan, xray_bytes(stored, header, plan.jpeg2000), boxes)


def _presentation(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The film as a for-presentation radiograph, in fractions of the stored range.

    Real VinDr films are processed for presentation (equalized, as DX and CR consoles do) and use most of
    their 12 bits without reaching the top: their RMS contrast is 0.22-0.27 under their full-range window
    and 0.28-0.31 once stretched between their 0.5th and 99.5th percentiles. A blend of the attenuation
    map's histogram equalization (weight 0.6-0.9) and its linear 1st-99th percentile stretch, mapped onto
    78-88% of the range above a small offset, gives the synthetic films the same two figures.
    """
    quantiles = np.percentile(image, np.linspace(0.0, 100.0, 257))
    equalized = np.interp(image, quantiles, np.linspace(0.0, 1.0, 257))
    low, high = quantiles[[2, 254]]  # about the 1st and 99th percentiles
    linear = np.clip((image - low) / max(float(high - low), 1e-6), 0.0, 1.0)
    weight = float(rng.uniform(0.6, 0.9))
    span, base = float(rng.uniform(0.78, 0.88)), float(rng.uniform(0.01, 0.05))
    return np.clip(base + span * (weight * equalized + (1.0 - weight) * linear), 0.0, 1.0).astype(np.float32)


def _extent(column: phantoms.Column, boxes: list[tuple[float, float, float, float]]) -> tuple[float, ...]:
    """(xmin, ymin, xmax, ymax) around the column and every box: what a collimator must leave visible."""
    corners = column.all_corners()
    xmin, ymin = corners.min(axis=0)
    xmax, ymax = corners.max(axis=0)
    for box in boxes:
        xmin, ymin = min(xmin, box[0]), min(ymin, box[1])
        xmax, ymax = max(xmax, box[2]), max(ymax, box[3])
    return float(xmin), float(ymin), float(xmax), float(ymax)


def _collimate(image: np.ndarray, rng: np.random.Generator, keep: tuple[float, ...]) -> None:
    """Black out bands along the film's edges (a collimated exposure), in place, sparing `keep`.

    Each side's band is drawn up to 12% of the film's width or height and cut back to stay clear of
    `keep`, so that together they cover about 8-20% of the pixels, as on the real films.
    """
    height, width = image.shape
    xmin, ymin, xmax, ymax = keep
    left = min(int(width * rng.uniform(0.03, 0.12)), max(int(xmin) - 2, 0))
    right = min(int(width * rng.uniform(0.03, 0.12)), max(width - int(xmax) - 3, 0))
    top = min(int(height * rng.uniform(0.0, 0.06)), max(int(ymin) - 2, 0))
    bottom = min(int(height * rng.uniform(0.0, 0.06)), max(height - int(ymax) - 3, 0))
    level = float(rng.uniform(0.0, 0.015))
    for band in (
        np.s_[:, :left],
        np.s_[:, width - right :],
        np.s_[:top, :],
        np.s_[height - bottom :, :],
    ):
        region = image[band]
        region[...] = level + np.abs(rng.normal(0.0, 0.004, size=region.shape)).astype(image.dtype)


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


def write(
    out_dir: Path,
    counts: dict,
    seed: int,
    decoys: bool,
    workers: int | None = None,
    film_size: str = "compact",
) -> None:
    """Write the VinDr folder into `out_dir` (see the module docstring)."""
    root = Path(out_dir) / FOLDER
    for sub in ("annotations", "train_images", "test_images"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    films = plan_films(seed, int(counts["vindr_images"]))
    if decoys:
        films += plan_decoys(seed)
    rows: dict[str, list[tuple]] = {"train": [], "test": []}
    for film in ordered_map(functools.partial(render_film, seed, film_size=film_size), films, workers):
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
