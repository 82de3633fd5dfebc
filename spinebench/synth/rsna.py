"""Synthetic RSNA 2024 Lumbar Spine Degenerative Classification archive (SOURCES.md 1 and 6).

Writes `rsna-2024-lumbar-spine-degenerative-classification.zip` with the five root CSVs and
`train_images/{study}/{series}/{instance}.dcm` (plus one public test study under `test_images/`).

Counting. `counts["rsna_images"]` is the number of distinct labelled (study, series, instance) triples
in train_label_coordinates.csv that are valid, i.e. the images the default standardization
(labeled_instance, min_severity null, multi_condition most_points) yields. Each study is planned as a
set of *instance groups* (the labelled points that share one DICOM instance), so the count is the total
number of groups and is met exactly:
- canal stenosis points (Sagittal T2/STIR) share 1-3 mid-sagittal instances;
- left and right foraminal points (Sagittal T1) share 1-3 para-sagittal instances per side;
- left and right subarticular points of a level usually share one axial instance (one image, the
  merged label), sometimes sit on two neighbouring instances (two images);
- in about 3% of studies (always in the first) the canal point of one level sits on the Sagittal T1
  instance of that level's foraminal points: one instance, two merged conditions (exercises
  `multi_condition`; it still counts once).
Severity cells are empty exactly where a (condition, level) has no coordinate row (trimmed studies
and ~1% random gaps). Every valid image has at least one level.

Always present (not decoys): a train.csv study with labels but no coordinates or images (the real data
has one); duplicate Axial T2 series (about 12% of studies, always the second) and axial series made of
two stacks of different orientation (about 15%, always the first); 1-based instance numbers with gaps
(`natural` order differs from lexical order); unlabelled neighbour slices around the labelled ones;
a public test study in test_series_descriptions.csv, sample_submission.csv and test_images/.

Decoys (`decoys=True`), all in one extra study whose train.csv row has only spinal_canal_stenosis_l1_l2:
- a coordinate row (Spinal Canal Stenosis, L1/L2) whose instance has no DICOM file -> missing image;
- a coordinate row with the unknown condition "Facet Arthropathy" (level L3/L4) on its own instance,
  whose DICOM exists -> unknown label.
Neither instance carries any other point, so rejecting them removes nothing valid.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spinebench.seeding import item_rng
from spinebench.synth import phantoms
from spinebench.synth.dicom import MrSlice, mr_slice_bytes
from spinebench.synth.parallel import ordered_map
from spinebench.synth.seeding import UniqueIds, dicom_uid, numeric_id
from spinebench.synth.writers import DeterministicZip, csv_bytes, format_coordinate
from spinebench.vocab import LEVELS

ARCHIVE_NAME = "rsna-2024-lumbar-spine-degenerative-classification.zip"
SCS = "Spinal Canal Stenosis"
LEFT_NFN = "Left Neural Foraminal Narrowing"
RIGHT_NFN = "Right Neural Foraminal Narrowing"
LEFT_SS = "Left Subarticular Stenosis"
RIGHT_SS = "Right Subarticular Stenosis"
CONDITIONS = (SCS, LEFT_NFN, RIGHT_NFN, LEFT_SS, RIGHT_SS)
SEVERITIES = ("Normal/Mild", "Moderate", "Severe")
SAG_T1, SAG_T2, AXIAL_T2 = "Sagittal T1", "Sagittal T2/STIR", "Axial T2"
COORDINATE_HEADER = ("study_id", "series_id", "instance_number", "condition", "level", "x", "y")
SERIES_HEADER = ("study_id", "series_id", "series_description")
SUBMISSION_HEADER = ("row_id", "normal_mild", "moderate", "severe")
DECOY_CONDITION = "Facet Arthropathy"

# Minimal study: one canal group, one foraminal group per side, one axial group per level.
MIN_GROUPS = 8
# At most 3 sagittal instances per family and two axial instances per level.
MAX_GROUPS = 3 + 3 + 3 + 2 * len(LEVELS)
# How likely each disc level is to degenerate (L1/L2 ... L5/S1); scaled per patient.
LEVEL_RISK = (0.06, 0.10, 0.18, 0.34, 0.26)


def column_name(condition: str, level: str) -> str:
    """train.csv column of a (condition, level), e.g. spinal_canal_stenosis_l1_l2."""
    return f"{condition.lower().replace(' ', '_')}_{level.lower().replace('/', '_')}"


TRAIN_COLUMNS = tuple(column_name(condition, level) for condition in CONDITIONS for level in LEVELS)


@dataclass(frozen=True)
class Point:
    """One labelled (condition, level) of a study."""

    condition: str
    level: int  # index into LEVELS


@dataclass
class Group:
    """The points that sit on one DICOM instance. `family` says which series holds it."""

    family: str  # "canal" | "L" | "R" (foraminal sides) | "axial"
    points: list[Point]

    @property
    def levels(self) -> list[int]:
        return sorted({point.level for point in self.points})


@dataclass
class SeriesPlan:
    """One series: its slices, which slice each group lies on, and its geometry."""

    series_id: int
    description: str
    weighting: str
    size: int
    slice_count: int
    spacing_mm: float
    instance_numbers: list[int]
    groups_at: dict[int, Group] = field(default_factory=dict)  # slice index -> group
    # Axial only: (disc index, offset mm below the disc centre, stack index) per slice.
    axial_slices: list[tuple[int, float, int]] = field(default_factory=list)
    stack_tilts_deg: tuple[float, ...] = (0.0,)
    lateral_offset_mm: float = 0.0  # sagittal: x of slice 0 relative to the midline
    frame_shift_mm: tuple[float, float] = (0.0, 0.0)  # where the field of view sits on the patient

    def written_slices(self) -> list[int]:
        """Labelled slices plus one unlabelled neighbour on each side of them."""
        labelled = sorted(self.groups_at)
        if not labelled:
            return []
        extra = {labelled[0] - 1, labelled[-1] + 1} - set(labelled)
        return sorted(set(labelled) | {i for i in extra if 0 <= i < self.slice_count})


@dataclass
class StudyPlan:
    study_id: int
    severities: dict[tuple[str, int], str]  # only labelled (condition, level) pairs
    series: list[SeriesPlan]
    groups: list[Group]


# --------------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------------
def plan_groups(rng: np.random.Generator, n_groups: int, overlap: bool) -> list[Group]:
    """Exactly `n_groups` instance groups (1..MAX_GROUPS) covering a study's labelled points."""
    if not 1 <= n_groups <= MAX_GROUPS:
        raise ValueError(f"a study holds 1..{MAX_GROUPS} labelled instances, not {n_groups}")
    canal = Group("canal", [Point(SCS, k) for k in range(len(LEVELS))])
    left = Group("L", [Point(LEFT_NFN, k) for k in range(len(LEVELS))])
    right = Group("R", [Point(RIGHT_NFN, k) for k in range(len(LEVELS))])
    axial = [Group("axial", [Point(LEFT_SS, k), Point(RIGHT_SS, k)]) for k in range(len(LEVELS))]
    if overlap:
        # One level's canal point is labelled on that level's foraminal instance.
        level = int(rng.integers(len(LEVELS)))
        canal.points.remove(Point(SCS, level))
        (left if rng.random() < 0.5 else right).points.append(Point(SCS, level))
    if n_groups < MIN_GROUPS:
        # A trimmed study (the last one of a small count): keep the most informative groups.
        priority = [canal, axial[3], left, axial[4], right, axial[2], axial[1], axial[0]]
        return priority[:n_groups]
    groups = [canal, left, right, *axial]
    for _ in range(n_groups - MIN_GROUPS):
        groups = _split_one(rng, groups)
    return groups


def _split_one(rng: np.random.Generator, groups: list[Group]) -> list[Group]:
    """Split one randomly chosen splittable group in two (one more labelled instance)."""
    options = []
    for index, group in enumerate(groups):
        if group.family == "axial":
            if len(group.points) == 2:
                options.append(index)
        elif len(group.levels) >= 2 and sum(g.family == group.family for g in groups) < 3:
            options.append(index)
    if not options:
        raise ValueError("no group left to split")
    index = options[int(rng.integers(len(options)))]
    group = groups[index]
    if group.family == "axial":
        halves = [Group("axial", [point]) for point in group.points]
    else:
        levels = group.levels
        cut = levels[int(rng.integers(1, len(levels)))]
        halves = [
            Group(group.family, [p for p in group.points if p.level < cut]),
            Group(group.family, [p for p in group.points if p.level >= cut]),
        ]
    return groups[:index] + halves + groups[index + 1 :]


def drop_random_points(rng: np.random.Generator, groups: list[Group], rate: float) -> None:
    """Remove a few points (unlabelled cells in the real data), never a group's last point."""
    for group in groups:
        for point in list(group.points):
            if len(group.points) > 1 and rng.random() < rate:
                group.points.remove(point)


def draw_severities(rng: np.random.Generator, points: list[Point]) -> dict[tuple[str, int], str]:
    """Severity per labelled point: worse at L4/L5 and L5/S1 and in 'older' patients."""
    patient_factor = rng.uniform(0.3, 1.9)
    severities = {}
    for point in points:
        risk = min(LEVEL_RISK[point.level] * patient_factor, 0.9)
        draw = rng.random()
        grade = 2 if draw < risk * 0.3 else 1 if draw < risk else 0
        severities[(point.condition, point.level)] = SEVERITIES[grade]
    return severities


def plan_study(seed: int, index: int, n_groups: int, study_id: int, series_ids: UniqueIds) -> StudyPlan:
    """Plan study number `index` with exactly `n_groups` labelled instances.

    Study 0 always has the canal/foraminal overlap and a two-stack axial series, study 1 always two
    axial series, so that even the smallest archive exercises them.
    """
    rng = item_rng(seed, "rsna", "study-plan", index)
    overlap = index == 0 or rng.random() < 0.03
    groups = plan_groups(rng, n_groups, overlap)
    if index > 0:
        drop_random_points(rng, groups, rate=0.01)
    points = [point for group in groups for point in group.points]
    severities = draw_severities(rng, points)

    axial_layout = "two_stacks" if index == 0 else "two_series" if index == 1 else "one_stack"
    if index > 1:
        draw = rng.random()
        axial_layout = "two_stacks" if draw < 0.15 else "two_series" if draw < 0.27 else "one_stack"

    positions = itertools.count()

    def new_series_id() -> int:
        return claim_series_id(seed, series_ids, study_id, next(positions))

    series: list[SeriesPlan] = []
    sagittal_groups = {family: [g for g in groups if g.family == family] for family in ("canal", "L", "R")}
    if sagittal_groups["canal"]:
        series.append(
            _sagittal_series(rng, new_series_id(), SAG_T2, "T2", {"canal": sagittal_groups["canal"]}, index)
        )
    if sagittal_groups["L"] or sagittal_groups["R"]:
        t1_groups = {"L": sagittal_groups["L"], "R": sagittal_groups["R"]}
        series.append(_sagittal_series(rng, new_series_id(), SAG_T1, "T1", t1_groups, index))
    axial_groups = [g for g in groups if g.family == "axial"]
    if axial_groups:
        if axial_layout == "two_series":
            upper = [g for g in axial_groups if g.levels[0] <= 2]
            lower = [g for g in axial_groups if g.levels[0] > 2]
            for part, levels in ((upper, range(0, 3)), (lower, range(3, 5))):
                if part:
                    series.append(_axial_series(rng, new_series_id(), part, list(levels), two_stacks=False))
        else:
            series.append(
                _axial_series(
                    rng,
                    new_series_id(),
                    axial_groups,
                    list(range(5)),
                    two_stacks=axial_layout == "two_stacks",
                )
            )
    return StudyPlan(study_id, severities, series, groups)


def claim_series_id(seed: int, series_ids: UniqueIds, study_id: int, position: int) -> int:
    """The id of the `position`-th series of a study (unique across the archive)."""
    return int(
        series_ids.claim(
            lambda attempt: numeric_id(seed, 10**8, 4 * 10**9, "rsna", "series", study_id, position, attempt)
        )
    )


def _instance_numbers(rng: np.random.Generator, count: int, force_gap: bool) -> list[int]:
    """1-based instance numbers, sometimes with a gap (the real files are not always contiguous)."""
    gap = int(rng.integers(1, 4)) if force_gap or rng.random() < 0.3 else 0
    gap_at = int(rng.integers(1, count))
    return [1 + i + (gap if i >= gap_at else 0) for i in range(count)]


def _sagittal_series(
    rng: np.random.Generator,
    series_id: int,
    description: str,
    weighting: str,
    families: dict,
    study_index: int,
) -> SeriesPlan:
    """A sagittal stack; canal groups go to the slices nearest the midline, foraminal groups to the
    slices nearest that side's foramen (patient left is +x, towards the last slice)."""
    count = int(rng.integers(15, 20))
    spacing = float(rng.uniform(3.3, 4.4))
    centre = (count - 1) / 2 + float(rng.uniform(-0.5, 0.5))
    lateral = [(i - centre) * spacing for i in range(count)]
    plan = SeriesPlan(
        series_id=series_id,
        description=description,
        weighting=weighting,
        size=int(rng.choice([144, 160, 176, 192])),
        slice_count=count,
        spacing_mm=spacing,
        instance_numbers=_instance_numbers(rng, count, force_gap=study_index == 0 and weighting == "T2"),
        lateral_offset_mm=lateral[0],
        frame_shift_mm=(float(rng.uniform(-12, 12)), float(rng.uniform(-12, 12))),
    )
    foramen_offset = 16.0  # slices are picked around the typical foramen; anatomy varies 14..18 mm
    targets = {"canal": 0.0, "L": foramen_offset, "R": -foramen_offset}
    for family, groups in families.items():
        ranked = sorted(range(count), key=lambda i: (abs(lateral[i] - targets[family]), i))
        free = [i for i in ranked if i not in plan.groups_at]
        # Groups in level order onto slices in lateral order: neighbouring levels on neighbouring slices.
        chosen = sorted(free[: len(groups)])
        for slice_index, group in zip(chosen, sorted(groups, key=lambda g: g.levels[0]), strict=True):
            plan.groups_at[slice_index] = group
    return plan


def _axial_series(
    rng: np.random.Generator, series_id: int, groups: list[Group], levels: list[int], two_stacks: bool
) -> SeriesPlan:
    """Axial blocks of 3 slices per level (above, through, below the disc), cranial to caudal.

    A merged L+R group sits on the slice through the disc; split groups use the disc slice and the
    slice below it. With `two_stacks`, levels L1/L2-L3/L4 and L4/L5-L5/S1 form two stacks tilted
    differently (the series then has two distinct ImageOrientationPatient values).
    """
    step = float(rng.uniform(3.5, 4.5))
    slices = []
    for level in levels:
        stack = 1 if two_stacks and level >= 3 else 0
        for offset in (-step, 0.0, step):
            slices.append((level, offset, stack))
    plan = SeriesPlan(
        series_id=series_id,
        description=AXIAL_T2,
        weighting="T2",
        size=int(rng.choice([128, 144, 160])),
        slice_count=len(slices),
        spacing_mm=step,
        instance_numbers=_instance_numbers(rng, len(slices), force_gap=False),
        axial_slices=slices,
        stack_tilts_deg=(float(rng.uniform(-12, -4)), float(rng.uniform(8, 16)))
        if two_stacks
        else (float(rng.uniform(-5, 5)),),
        frame_shift_mm=(float(rng.uniform(-6, 6)), float(rng.uniform(-6, 6))),
    )
    by_level: dict[int, list[Group]] = {}
    for group in groups:
        by_level.setdefault(group.levels[0], []).append(group)
    for level, level_groups in by_level.items():
        disc_slice = slices.index((level, 0.0, 1 if two_stacks and level >= 3 else 0))
        for group, slice_index in zip(level_groups, (disc_slice, disc_slice + 1), strict=False):
            plan.groups_at[slice_index] = group
    return plan


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------
@dataclass
class RenderedSlice:
    series_id: int
    instance_number: int
    dicom: bytes
    coordinates: list[tuple[str, int, float, float]]  # (condition, level, x, y)


def grades_of(
    severities: dict[tuple[str, int], str], condition: str, rng: np.random.Generator
) -> tuple[int, ...]:
    """Grade per level for the anatomy; an unlabelled level gets a random mostly-normal grade."""
    grades = []
    for level in range(len(LEVELS)):
        label = severities.get((condition, level))
        grades.append(SEVERITIES.index(label) if label else int(rng.random() < 0.15))
    return tuple(grades)


def render_study(seed: int, plan: StudyPlan) -> list[RenderedSlice]:
    """Every written slice of a study: DICOM bytes and the coordinate rows that point at it."""
    rng = item_rng(seed, "rsna", "anatomy", plan.study_id)
    anatomy = phantoms.lumbar_mr_anatomy(
        rng,
        canal_grade=grades_of(plan.severities, SCS, rng),
        foramen_grade={
            "L": grades_of(plan.severities, LEFT_NFN, rng),
            "R": grades_of(plan.severities, RIGHT_NFN, rng),
        },
        recess_grade={
            "L": grades_of(plan.severities, LEFT_SS, rng),
            "R": grades_of(plan.severities, RIGHT_SS, rng),
        },
    )
    frame_of_reference = dicom_uid(seed, "rsna", "frame", plan.study_id)
    rendered = []
    for series in plan.series:
        series_rng = item_rng(seed, "rsna", "series-look", plan.study_id, series.series_id)
        peak = float(series_rng.uniform(1400, 4095))
        noise = float(series_rng.uniform(0.015, 0.04))
        for slice_index in series.written_slices():
            slice_rng = item_rng(seed, "rsna", "slice", plan.study_id, series.series_id, slice_index)
            if series.axial_slices:
                pixels, landmarks, geometry = _render_axial(anatomy, series, slice_index)
            else:
                pixels, landmarks, geometry = _render_sagittal(anatomy, series, slice_index)
            image = phantoms.finish_mr(pixels, slice_rng, noise)
            stored = np.rint(image * peak).astype(np.uint16)
            instance_number = series.instance_numbers[slice_index]
            header = MrSlice(
                study_uid=str(plan.study_id),
                series_uid=str(series.series_id),
                sop_instance_uid=dicom_uid(
                    seed, "rsna", "sop", plan.study_id, series.series_id, instance_number
                ),
                frame_of_reference_uid=frame_of_reference,
                patient_id=str(plan.study_id),
                instance_number=instance_number,
                spacing_between_slices=series.spacing_mm,
                **geometry,
            )
            group = series.groups_at.get(slice_index)
            coordinates = []
            for point in group.points if group else []:
                x, y = landmarks[_landmark_key(point)]
                coordinates.append((point.condition, point.level, x, y))
            rendered.append(
                RenderedSlice(series.series_id, instance_number, mr_slice_bytes(stored, header), coordinates)
            )
    return rendered


def _landmark_key(point: Point) -> tuple:
    if point.condition == SCS:
        return ("canal", point.level)
    if point.condition in (LEFT_NFN, RIGHT_NFN):
        return ("foramen", "L" if point.condition == LEFT_NFN else "R", point.level)
    return ("recess", "L" if point.condition == LEFT_SS else "R", point.level)


def _sagittal_frame(series: SeriesPlan, anatomy: phantoms.LumbarMrAnatomy) -> phantoms.SagittalFrame:
    """The series' field of view: the spine (and the canal behind it) roughly centred, then shifted."""
    fov = 270.0
    corners = anatomy.column_mm.all_corners()
    centre = (corners.min(axis=0) + corners.max(axis=0)) / 2 + np.array([25.0, 0.0])
    origin = centre - fov / 2 + np.asarray(series.frame_shift_mm)
    return phantoms.SagittalFrame(series.size, fov / series.size, (float(origin[0]), float(origin[1])))


def _render_sagittal(anatomy: phantoms.LumbarMrAnatomy, series: SeriesPlan, slice_index: int):
    """Canvas, landmarks and LPS geometry of one sagittal slice."""
    frame = _sagittal_frame(series, anatomy)
    lateral = series.lateral_offset_mm + slice_index * series.spacing_mm
    canvas = phantoms.render_mr_sagittal(anatomy, lateral, series.weighting, frame)
    landmarks = phantoms.sagittal_landmarks(anatomy, frame)
    # LPS: rows run inferior (-z), columns posterior (+y); the slice sits at x = lateral.
    geometry = {
        "position": (lateral, frame.origin_mm[0], -frame.origin_mm[1]),
        "orientation": (0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
        "pixel_spacing": frame.spacing_mm,
        "slice_thickness": round(series.spacing_mm * 0.9, 2),
    }
    return canvas, landmarks, geometry


def _render_axial(anatomy: phantoms.LumbarMrAnatomy, series: SeriesPlan, slice_index: int):
    """Canvas, landmarks and LPS geometry of one axial slice (tilted with its stack)."""
    level, offset, stack = series.axial_slices[slice_index]
    fov = 200.0
    spacing = fov / series.size
    shift = np.asarray(series.frame_shift_mm) / spacing
    frame = phantoms.AxialFrame(
        series.size, spacing, (series.size / 2 + shift[0], series.size * 0.45 + shift[1])
    )
    canvas = phantoms.render_mr_axial(anatomy, level, offset, "T2", frame)
    landmarks = phantoms.axial_landmarks(anatomy, frame, level)
    tilt = math.radians(series.stack_tilts_deg[stack])
    column_direction = (0.0, math.cos(tilt), -math.sin(tilt))
    z = -(float(anatomy.column_mm.disc_centre(level)[1]) + offset)
    top_left_x = -frame.centre_px[0] * spacing
    top_left_y = -frame.centre_px[1] * spacing
    geometry = {
        "position": (top_left_x, top_left_y * column_direction[1], z + top_left_y * column_direction[2]),
        "orientation": (1.0, 0.0, 0.0, *column_direction),
        "pixel_spacing": spacing,
        "slice_thickness": round(series.spacing_mm * 0.85, 2),
    }
    return canvas, landmarks, geometry


# --------------------------------------------------------------------------------------------------
# The archive
# --------------------------------------------------------------------------------------------------
def plan_train_studies(
    seed: int, image_count: int, study_ids: UniqueIds, series_ids: UniqueIds
) -> list[StudyPlan]:
    """Studies whose labelled instances add up to exactly `image_count`."""
    plans = []
    remaining, index = image_count, 0
    while remaining > 0:
        size_rng = item_rng(seed, "rsna", "study-size", index)
        n_groups = min(remaining, MIN_GROUPS + int(size_rng.binomial(MAX_GROUPS - MIN_GROUPS, 0.36)))
        study_id = int(
            study_ids.claim(
                lambda attempt, i=index: numeric_id(seed, 10**6, 5 * 10**9, "rsna", "study", i, attempt)
            )
        )
        plans.append(plan_study(seed, index, n_groups, study_id, series_ids))
        remaining -= n_groups
        index += 1
    return plans


def plan_decoy_study(seed: int, study_ids: UniqueIds, series_ids: UniqueIds) -> tuple[StudyPlan, int, int]:
    """The decoy study: a canal point on slice 4 (its file is left out) and one on slice 7 (relabelled
    with an unknown condition). Returns the plan, the missing instance number and the relabelled one."""
    study_id = int(
        study_ids.claim(lambda attempt: numeric_id(seed, 10**6, 5 * 10**9, "rsna", "decoy-study", attempt))
    )
    series_id = int(
        series_ids.claim(lambda attempt: numeric_id(seed, 10**8, 4 * 10**9, "rsna", "decoy-series", attempt))
    )
    rng = item_rng(seed, "rsna", "decoy-plan")
    groups = [Group("canal", [Point(SCS, 0)]), Group("canal", [Point(SCS, 2)])]
    series = _sagittal_series(rng, series_id, SAG_T2, "T2", {"canal": groups}, study_index=-1)
    series.groups_at = {4: groups[0], 7: groups[1]}
    plan = StudyPlan(study_id, {(SCS, 0): "Moderate"}, [series], groups)
    return plan, series.instance_numbers[4], series.instance_numbers[7]


def train_row(study_id: int, severities: dict[tuple[str, int], str]) -> list:
    """A train.csv row: study_id and the 25 severities in condition-major order (None: empty cell)."""
    return [study_id] + [
        severities.get((condition, level)) for condition in CONDITIONS for level in range(len(LEVELS))
    ]


def write(out_dir: Path, counts: dict, seed: int, decoys: bool, workers: int | None = None) -> None:
    """Write the RSNA zip into `out_dir` (see the module docstring); studies render on `workers` processes."""
    study_ids, series_ids = UniqueIds(), UniqueIds()
    plans = plan_train_studies(seed, int(counts["rsna_images"]), study_ids, series_ids)
    unlabelled_id = int(
        study_ids.claim(lambda attempt: numeric_id(seed, 10**6, 5 * 10**9, "rsna", "no-coordinates", attempt))
    )
    unlabelled_severities = draw_severities(
        item_rng(seed, "rsna", "no-coordinates"),
        [Point(c, k) for c in CONDITIONS for k in range(len(LEVELS))],
    )
    test_id = int(
        study_ids.claim(lambda attempt: numeric_id(seed, 10**6, 5 * 10**9, "rsna", "test-study", attempt))
    )
    test_plan = plan_study(seed, -1, MIN_GROUPS, test_id, series_ids)

    train_rows = [train_row(plan.study_id, plan.severities) for plan in plans]
    train_rows.append(train_row(unlabelled_id, unlabelled_severities))
    series_rows = [(p.study_id, s.series_id, s.description) for p in plans for s in p.series]
    coordinate_rows = []
    with DeterministicZip(out_dir / ARCHIVE_NAME) as archive:
        for plan, items in zip(
            plans, ordered_map(functools.partial(render_study, seed), plans, workers), strict=True
        ):
            for item in items:
                archive.add(
                    f"train_images/{plan.study_id}/{item.series_id}/{item.instance_number}.dcm", item.dicom
                )
                coordinate_rows += _coordinate_rows(plan.study_id, item)
        if decoys:
            decoy_plan, missing_instance, relabelled_instance = plan_decoy_study(seed, study_ids, series_ids)
            train_rows.append(train_row(decoy_plan.study_id, decoy_plan.severities))
            series_rows += [(decoy_plan.study_id, s.series_id, s.description) for s in decoy_plan.series]
            for item in render_study(seed, decoy_plan):
                rows = _coordinate_rows(decoy_plan.study_id, item)
                if item.instance_number == relabelled_instance:
                    rows = [row[:3] + (DECOY_CONDITION, "L3/L4") + row[5:] for row in rows]
                coordinate_rows += rows
                if item.instance_number != missing_instance:
                    archive.add(
                        f"train_images/{decoy_plan.study_id}/{item.series_id}/{item.instance_number}.dcm",
                        item.dicom,
                    )
        for item in render_study(seed, test_plan):
            archive.add(f"test_images/{test_id}/{item.series_id}/{item.instance_number}.dcm", item.dicom)

        archive.add(
            "train.csv", csv_bytes(("study_id",) + TRAIN_COLUMNS, sorted(train_rows, key=lambda r: r[0]))
        )
        archive.add(
            "train_label_coordinates.csv",
            csv_bytes(COORDINATE_HEADER, sorted(coordinate_rows, key=_coordinate_order)),
        )
        archive.add("train_series_descriptions.csv", csv_bytes(SERIES_HEADER, sorted(series_rows)))
        test_series = [(test_id, s.series_id, s.description) for s in test_plan.series]
        archive.add("test_series_descriptions.csv", csv_bytes(SERIES_HEADER, sorted(test_series)))
        submission = [(f"{test_id}_{column}", "0.333333", "0.333333", "0.333333") for column in TRAIN_COLUMNS]
        archive.add("sample_submission.csv", csv_bytes(SUBMISSION_HEADER, submission))


def _coordinate_rows(study_id: int, item: RenderedSlice) -> list[tuple]:
    return [
        (
            study_id,
            item.series_id,
            item.instance_number,
            condition,
            LEVELS[level],
            format_coordinate(x, 6),
            format_coordinate(y, 6),
        )
        for condition, level, x, y in item.coordinates
    ]


def _coordinate_order(row: tuple) -> tuple:
    """Study, series, instance, then condition and level in train.csv order (unknown conditions last)."""
    condition_rank = CONDITIONS.index(row[3]) if row[3] in CONDITIONS else len(CONDITIONS)
    return row[0], row[1], row[2], condition_rank, row[4]
