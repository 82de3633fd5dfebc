"""Synthetic RSNA 2024 Lumbar Spine Degenerative Classification archive (SOURCES.md 1 and 6).

Writes `rsna-2024-lumbar-spine-degenerative-classification.zip` with the five root CSVs and
`train_images/{study}/{series}/{instance}.dcm` (plus one public test study under `test_images/`).

Counting. `counts["rsna_images"]` is the number of distinct labelled (study, series, instance) triples
in train_label_coordinates.csv that are valid, i.e. the images the default standardization
(labeled_instance, min_severity null, multi_condition most_points) yields. Each study is planned as a
set of *instance groups* (the labelled points that share one DICOM instance), so the count is the total
number of groups and is met exactly:
- canal stenosis points (Sagittal T2/STIR) share 1-3 mid-sagittal instances;
- the foraminal points of one side (Sagittal T1) share 1-3 para-sagittal instances, so one side's
  points often spread over 2-3 instances;
- left and right subarticular points of a level usually share one axial instance (one image, the
  merged label), sometimes sit on two neighbouring instances of one series, and in studies with a
  repeated axial acquisition sometimes on two different Axial T2 series (two images each time);
- in about 3% of studies (always in the first) the canal point of one level sits on the Sagittal T1
  instance of that level's foraminal points: one instance, two merged conditions (exercises
  `multi_condition`; it still counts once).
Severity cells are empty exactly where a (condition, level) has no coordinate row (trimmed studies
and ~1% random gaps). Every valid image has at least one level.

Facts of the real files (issue 6), reproduced at every scale:
- series per study: about 17% of the real studies (343 of 1,975) have other than 3 series, 2 to 6.
  Here: axial series split by level range (~10%, 4 series), a repeated axial acquisition (~3%, 4),
  one or two unlabelled extra series, a duplicate Sagittal T1 or another Axial T2 (~4%), no
  Sagittal T1 with the foraminal points on the Sagittal T2/STIR series (~0.15%, like the real 3 of
  1,975 with fewer than 3: 2 series). Unlabelled series are written as three mid-series slices and
  listed in train_series_descriptions.csv;
- study ids have 7 to 10 digits, drawn below 2**32 like the real ones, so most exceed int32;
- slices of one series may differ in shape: in ~3% of series (always the first study's Sagittal
  T2/STIR) the slices from some instance on have another matrix size (same field of view);
- coordinates are written with all the digits of the float (shortest round-trip text, up to 17
  significant digits, e.g. 322.8314606741573), as in the real CSV;
- line endings: train.csv, train_label_coordinates.csv and train_series_descriptions.csv (the three
  files the standardization reads) end their lines with CRLF, so every build parses CRLF and a stray
  carriage return would surface in their last columns (a severity grade, y, the series description);
  test_series_descriptions.csv and sample_submission.csv keep LF, so the archive mixes both endings
  and no reader can assume one ending per archive.
The first studies show what every archive must exercise (each only if the count reaches it):
- study 0 (10-digit id above 2**31 - 1): the canal/foraminal overlap; a two-stack first axial series
  and a repeated axial series holding the right subarticular point of one level whose left point is
  on the first (L/R on two series); another level split onto neighbouring instances; left foraminal
  points on 2 instances and right ones on 3; its Sagittal T2/STIR changes shape at its middle written
  slice; gapped instance numbers. It has at least 13 labelled instances (when the count allows), 4
  series;
- study 1 (7-digit id): axial series split by level range plus two unlabelled extra series
  (a duplicate Sagittal T1 and another Axial T2): 6 series;
- study 2: no Sagittal T1, foraminal points on the Sagittal T2/STIR series: 2 series;
- study 3: axial series split by level range plus one unlabelled Axial T2: 5 series.
So an archive of 65 or more images holds every fact (studies 0-2 take at most MAX_GROUPS = 19
instances each, study 3 needs MIN_GROUPS = 8 to be complete); the demo (120) and full counts do.

Always present (not decoys): a train.csv study with labels but no coordinates or images (the real data
has one); axial series made of two stacks of different orientation (about 15%, always the first);
1-based instance numbers with gaps (`natural` order differs from lexical order); unlabelled neighbour
slices around the labelled ones; a public test study in test_series_descriptions.csv,
sample_submission.csv and test_images/.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spinebench.seeding import item_rng
from spinebench.synth import phantoms
from spinebench.synth.dicom import MrSlice, mr_slice_bytes
from spinebench.synth.parallel import ordered_map
from spinebench.synth.seeding import UniqueIds, dicom_uid, numeric_id
from spinebench.synth.writers import DeterministicZip, csv_bytes
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
# Study ids: 7 to 10 digits below 2**32, like the real ones (e.g. 4003253, 44036939, 4290709089).
STUDY_ID_RANGE = (10**6, 2**32)
# Study 0's id exceeds int32 (any reader that narrows ids to 32-bit integers breaks on it); study 1's
# has 7 digits, the shortest real length.
FORCED_STUDY_ID_RANGES = {0: (2**31, 2**32), 1: (10**6, 10**7)}
SERIES_ID_RANGE = (10**8, 4 * 10**9)
# Matrix sizes (square) of sagittal and axial slices; every size stays within 128..192 pixels.
SAGITTAL_SIZES = (144, 160, 176, 192)
AXIAL_SIZES = (128, 144, 160)
# Share of series whose slices change matrix size part-way (the real "multi-shape" series).
RESIZED_SERIES_RATE = 0.03


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
    # Axial only: 1 puts the instance on the study's repeated axial series (a right subarticular point
    # whose left partner is on the first axial series), 0 on the series covering its level.
    axial_series: int = 0

    @property
    def levels(self) -> list[int]:
        return sorted({point.level for point in self.points})


@dataclass(frozen=True)
class Split:
    """A split every archive shows: `family` "L"/"R" (one more foraminal instance) or "axial" (the
    L/R points of `level` on two instances; `cross` puts the right one on the repeated axial series)."""

    family: str
    level: int = 0
    cross: bool = False


@dataclass(frozen=True)
class StudyLayout:
    """How a study's series are laid out (see the module docstring)."""

    overlap: bool = False  # a canal point on a foraminal instance
    two_stacks: bool = False  # the first axial series holds two stacks of different orientation
    axial_mode: str = "one"  # "one" | "split_levels" (L1-L3 / L4-S1) | "repeat" (a second full series)
    has_t1: bool = True  # False: no Sagittal T1, foraminal points on the Sagittal T2/STIR series
    extra_series: tuple[str, ...] = ()  # descriptions of unlabelled extra series
    forced_splits: tuple[Split, ...] = ()
    resize_canal_series: bool = False  # the Sagittal T2/STIR changes shape at its middle written slice


# Study 0's splits, most important first (a small count keeps only the first few): L/R subarticular of
# L4/L5 on two series, left foraminal points on 2 instances, L/R of L5/S1 on neighbouring instances,
# right foraminal points on 3 instances.
STUDY0_SPLITS = (Split("axial", 3, cross=True), Split("L"), Split("axial", 4), Split("R"), Split("R"))
FIRST_LAYOUTS = {
    0: StudyLayout(
        overlap=True,
        two_stacks=True,
        axial_mode="repeat",
        forced_splits=STUDY0_SPLITS,
        resize_canal_series=True,
    ),
    1: StudyLayout(axial_mode="split_levels", extra_series=(SAG_T1, AXIAL_T2)),
    2: StudyLayout(has_t1=False),
    3: StudyLayout(axial_mode="split_levels", extra_series=(AXIAL_T2,)),
}


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
    # A multi-shape series: slices from index `resized_from` on have matrix size `resized_to`.
    resized_from: int | None = None
    resized_to: int = 0

    def written_slices(self) -> list[int]:
        """Labelled slices plus one unlabelled neighbour on each side of them; for a series without
        labels, its three middle slices (the real unlabelled series have files too)."""
        labelled = sorted(self.groups_at)
        if not labelled:
            middle = self.slice_count // 2
            return [i for i in (middle - 1, middle, middle + 1) if 0 <= i < self.slice_count]
        extra = {labelled[0] - 1, labelled[-1] + 1} - set(labelled)
        return sorted(set(labelled) | {i for i in extra if 0 <= i < self.slice_count})

    def size_of(self, slice_index: int) -> int:
        """Matrix size (rows = columns) of one slice."""
        if self.resized_from is not None and slice_index >= self.resized_from:
            return self.resized_to
        return self.size


@dataclass
class StudyPlan:
    study_id: int
    severities: dict[tuple[str, int], str]  # only labelled (condition, level) pairs
    series: list[SeriesPlan]
    groups: list[Group]


# --------------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------------
def plan_groups(
    rng: np.random.Generator,
    n_groups: int,
    overlap: bool,
    forced_splits: tuple[Split, ...] = (),
    cross_sides: bool = False,
) -> list[Group]:
    """Exactly `n_groups` instance groups (1..MAX_GROUPS) covering a study's labelled points.

    `forced_splits` are made first, as far as `n_groups` allows; then random splits. With
    `cross_sides` (a study with a repeated axial series) a random L/R split puts the right point on
    that series half of the time.
    """
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
    for split in forced_splits[: n_groups - MIN_GROUPS]:
        groups = _forced_split(rng, groups, split)
    while len(groups) < n_groups:
        groups = _split_one(rng, groups, cross_sides)
    return groups


def _splittable(groups: list[Group], index: int) -> bool:
    """Whether group `index` can become two instances (an L/R axial pair, or a sagittal group with
    two levels whose family has fewer than 3 instances)."""
    group = groups[index]
    if group.family == "axial":
        return len(group.points) == 2
    return len(group.levels) >= 2 and sum(g.family == group.family for g in groups) < 3


def _forced_split(rng: np.random.Generator, groups: list[Group], split: Split) -> list[Group]:
    """Make one of study 0's splits (the axial pair of `split.level`, or the widest group of a side)."""
    if split.family == "axial":
        index = next(i for i, g in enumerate(groups) if g.family == "axial" and g.levels == [split.level])
    else:
        family = [i for i, g in enumerate(groups) if g.family == split.family]
        index = max(family, key=lambda i: (len(groups[i].levels), -i))
    if not _splittable(groups, index):
        raise ValueError(f"cannot make split {split}")
    return _split_at(rng, groups, index, split.cross)


def _split_one(rng: np.random.Generator, groups: list[Group], cross_sides: bool) -> list[Group]:
    """Split one randomly chosen splittable group in two (one more labelled instance)."""
    options = [index for index in range(len(groups)) if _splittable(groups, index)]
    if not options:
        raise ValueError("no group left to split")
    index = options[int(rng.integers(len(options)))]
    cross = groups[index].family == "axial" and cross_sides and rng.random() < 0.5
    return _split_at(rng, groups, index, cross)


def _split_at(rng: np.random.Generator, groups: list[Group], index: int, cross: bool) -> list[Group]:
    """Groups with group `index` split in two: an axial L/R pair into its sides (the right one onto the
    repeated axial series when `cross`), a sagittal group at a random level cut."""
    group = groups[index]
    if group.family == "axial":
        left_point, right_point = group.points
        halves = [Group("axial", [left_point]), Group("axial", [right_point], axial_series=int(cross))]
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


def draw_layout(rng: np.random.Generator) -> StudyLayout:
    """A random study's series layout, at rates that give about 17% studies with other than 3 series
    (the real 343 of 1,975): split axial ~10%, repeated axial ~3%, extra series ~4%, no T1 ~0.15%."""
    overlap = rng.random() < 0.03
    draw = rng.random()
    two_stacks = draw < 0.15
    axial_mode = "split_levels" if 0.15 <= draw < 0.25 else "repeat" if 0.25 <= draw < 0.28 else "one"
    extras = rng.random()
    extra_count = 2 if extras < 0.01 else 1 if extras < 0.04 else 0
    # Mostly another Axial T2, a few duplicate Sagittal T1 (SOURCES.md 1.3).
    extra_series = tuple(AXIAL_T2 if rng.random() < 0.75 else SAG_T1 for _ in range(extra_count))
    has_t1 = rng.random() >= 0.0015
    return StudyLayout(overlap, two_stacks, axial_mode, has_t1, extra_series)


def study_layout(rng: np.random.Generator, index: int) -> StudyLayout:
    """The fixed layout of the first studies (FIRST_LAYOUTS), else a random one (the public test study,
    index -1, always draws)."""
    return FIRST_LAYOUTS.get(index) or draw_layout(rng)


def plan_study(seed: int, index: int, n_groups: int, study_id: int, series_ids: UniqueIds) -> StudyPlan:
    """Plan study number `index` with exactly `n_groups` labelled instances (layout: study_layout)."""
    rng = item_rng(seed, "rsna", "study-plan", index)
    layout = study_layout(rng, index)
    groups = plan_groups(
        rng, n_groups, layout.overlap, layout.forced_splits, cross_sides=layout.axial_mode == "repeat"
    )
    if index > 0:
        drop_random_points(rng, groups, rate=0.01)
    points = [point for group in groups for point in group.points]
    severities = draw_severities(rng, points)

    positions = itertools.count()

    def new_series_id() -> int:
        return claim_series_id(seed, series_ids, study_id, next(positions))

    series = _sagittal_plans(rng, new_series_id, groups, layout, index)
    series += _axial_plans(rng, new_series_id, groups, layout)
    for description in layout.extra_series:
        series.append(_unlabelled_series(rng, new_series_id(), description, index))
    for plan in series:
        forced = layout.resize_canal_series and plan.description == SAG_T2
        if forced or rng.random() < RESIZED_SERIES_RATE:
            _resize_part(rng, plan, middle=forced)
    return StudyPlan(study_id, severities, series, groups)


def _sagittal_plans(
    rng: np.random.Generator,
    new_series_id: Callable[[], int],
    groups: list[Group],
    layout: StudyLayout,
    index: int,
) -> list[SeriesPlan]:
    """Sagittal T2/STIR (canal) and Sagittal T1 (foraminal) series; without T1, the T2/STIR one holds
    the foraminal points too."""
    families = {family: [g for g in groups if g.family == family] for family in ("canal", "L", "R")}
    t2_families = {"canal": families["canal"]}
    t1_families = {"L": families["L"], "R": families["R"]}
    if not layout.has_t1:
        t2_families, t1_families = {**t2_families, **t1_families}, {}
    series = []
    if any(t2_families.values()):
        series.append(_sagittal_series(rng, new_series_id(), SAG_T2, "T2", t2_families, index))
    if any(t1_families.values()):
        series.append(_sagittal_series(rng, new_series_id(), SAG_T1, "T1", t1_families, index))
    return series


def _axial_plans(
    rng: np.random.Generator, new_series_id: Callable[[], int], groups: list[Group], layout: StudyLayout
) -> list[SeriesPlan]:
    """The Axial T2 series: one (one or two stacks), two split by level range (L1-L3 / L4-S1), or a
    first one plus a repeated acquisition over all levels holding the `axial_series == 1` groups."""
    axial_groups = [g for g in groups if g.family == "axial"]
    if not axial_groups:
        return []
    if layout.axial_mode != "repeat" and any(g.axial_series for g in axial_groups):
        # Only a repeated acquisition can hold them; dropping them would break the image count.
        raise ValueError("a group on a second axial series needs axial_mode 'repeat'")
    if layout.axial_mode == "split_levels":
        series = []
        for levels in (range(0, 3), range(3, 5)):
            part = [g for g in axial_groups if g.levels[0] in levels]
            if part:
                series.append(_axial_series(rng, new_series_id(), part, list(levels), two_stacks=False))
        return series
    first = [g for g in axial_groups if g.axial_series == 0]
    series = [_axial_series(rng, new_series_id(), first, list(range(5)), two_stacks=layout.two_stacks)]
    if layout.axial_mode == "repeat":
        repeated = [g for g in axial_groups if g.axial_series == 1]
        series.append(_axial_series(rng, new_series_id(), repeated, list(range(5)), two_stacks=False))
    return series


def _unlabelled_series(rng: np.random.Generator, series_id: int, description: str, index: int) -> SeriesPlan:
    """An extra series without coordinates (a duplicate Sagittal T1 or another Axial T2)."""
    if description == AXIAL_T2:
        return _axial_series(rng, series_id, [], list(range(5)), two_stacks=False)
    return _sagittal_series(rng, series_id, description, "T1", {}, index)


def _resize_part(rng: np.random.Generator, plan: SeriesPlan, middle: bool) -> None:
    """Give the written slices from one on another matrix size (the middle written slice when
    `middle`, else a random one after the first), so the series holds two shapes."""
    written = plan.written_slices()
    if len(written) < 2:
        return
    plan.resized_from = written[len(written) // 2] if middle else written[int(rng.integers(1, len(written)))]
    sizes = [size for size in (AXIAL_SIZES if plan.axial_slices else SAGITTAL_SIZES) if size != plan.size]
    plan.resized_to = int(rng.choice(sizes))


def claim_series_id(seed: int, series_ids: UniqueIds, study_id: int, position: int) -> int:
    """The id of the `position`-th series of a study (unique across the archive)."""
    return int(
        series_ids.claim(
            lambda attempt: numeric_id(seed, *SERIES_ID_RANGE, "rsna", "series", study_id, position, attempt)
        )
    )


def claim_study_id(seed: int, study_ids: UniqueIds, index: int) -> int:
    """The id of train study `index` (unique across the archive; FORCED_STUDY_ID_RANGES for the first)."""
    low, high = FORCED_STUDY_ID_RANGES.get(index, STUDY_ID_RANGE)
    return int(study_ids.claim(lambda attempt: numeric_id(seed, low, high, "rsna", "study", index, attempt)))


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
        size=int(rng.choice(SAGITTAL_SIZES)),
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

    A merged L+R group sits on the slice through the disc; the two sides of a split level, when both
    are on this series, use the disc slice and the slice below it (neighbouring instances). With
    `two_stacks`, levels L1/L2-L3/L4 and L4/L5-L5/S1 form two stacks tilted differently (the series
    then has two distinct ImageOrientationPatient values).
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
        size=int(rng.choice(AXIAL_SIZES)),
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


def _sagittal_frame(
    series: SeriesPlan, anatomy: phantoms.LumbarMrAnatomy, size: int
) -> phantoms.SagittalFrame:
    """The series' field of view: the spine (and the canal behind it) roughly centred, then shifted.
    The field of view is the series'; `size` (the slice's matrix) only sets the pixel spacing."""
    fov = 270.0
    corners = anatomy.column_mm.all_corners()
    centre = (corners.min(axis=0) + corners.max(axis=0)) / 2 + np.array([25.0, 0.0])
    origin = centre - fov / 2 + np.asarray(series.frame_shift_mm)
    return phantoms.SagittalFrame(size, fov / size, (float(origin[0]), float(origin[1])))


def _render_sagittal(anatomy: phantoms.LumbarMrAnatomy, series: SeriesPlan, slice_index: int):
    """Canvas, landmarks and LPS geometry of one sagittal slice."""
    frame = _sagittal_frame(series, anatomy, series.size_of(slice_index))
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
    size = series.size_of(slice_index)  # the field of view is the series'; a resized slice only resamples it
    spacing = fov / size
    shift = np.asarray(series.frame_shift_mm) / spacing
    frame = phantoms.AxialFrame(size, spacing, (size / 2 + shift[0], size * 0.45 + shift[1]))
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
        drawn = MIN_GROUPS + int(size_rng.binomial(MAX_GROUPS - MIN_GROUPS, 0.36))
        # Study 0 is large enough for all its forced splits (when the count allows).
        least = MIN_GROUPS + len(FIRST_LAYOUTS[0].forced_splits) if index == 0 else MIN_GROUPS
        n_groups = min(remaining, max(drawn, least))
        study_id = claim_study_id(seed, study_ids, index)
        plans.append(plan_study(seed, index, n_groups, study_id, series_ids))
        remaining -= n_groups
        index += 1
    return plans


def plan_decoy_study(seed: int, study_ids: UniqueIds, series_ids: UniqueIds) -> tuple[StudyPlan, int, int]:
    """The decoy study: a canal point on slice 4 (its file is left out) and one on slice 7 (relabelled
    with an unknown condition). Returns the plan, the missing instance number and the relabelled one."""
    study_id = int(
        study_ids.claim(lambda attempt: numeric_id(seed, *STUDY_ID_RANGE, "rsna", "decoy-study", attempt))
    )
    series_id = int(
        series_ids.claim(lambda attempt: numeric_id(seed, *SERIES_ID_RANGE, "rsna", "decoy-series", attempt))
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
        study_ids.claim(lambda attempt: numeric_id(seed, *STUDY_ID_RANGE, "rsna", "no-coordinates", attempt))
    )
    unlabelled_severities = draw_severities(
        item_rng(seed, "rsna", "no-coordinates"),
        [Point(c, k) for c in CONDITIONS for k in range(len(LEVELS))],
    )
    test_id = int(
        study_ids.claim(lambda attempt: numeric_id(seed, *STUDY_ID_RANGE, "rsna", "test-study", attempt))
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
            "train.csv", crlf_csv_bytes(("study_id",) + TRAIN_COLUMNS, sorted(train_rows, key=lambda r: r[0]))
        )
        archive.add(
            "train_label_coordinates.csv",
            crlf_csv_bytes(COORDINATE_HEADER, sorted(coordinate_rows, key=_coordinate_order)),
        )
        archive.add("train_series_descriptions.csv", crlf_csv_bytes(SERIES_HEADER, sorted(series_rows)))
        test_series = [(test_id, s.series_id, s.description) for s in test_plan.series]
        archive.add("test_series_descriptions.csv", csv_bytes(SERIES_HEADER, sorted(test_series)))
        submission = [(f"{test_id}_{column}", "0.333333", "0.333333", "0.333333") for column in TRAIN_COLUMNS]
        archive.add("sample_submission.csv", csv_bytes(SUBMISSION_HEADER, submission))


def crlf_csv_bytes(header: tuple[str, ...], rows: list) -> bytes:
    """csv_bytes with CRLF line ends (the module docstring says which files get them and why).

    Replacing every LF is exact: no cell of these files (integer ids, vocabulary strings, decimal
    coordinates) can hold a line break.
    """
    return csv_bytes(header, rows).replace(b"\n", b"\r\n")


def coordinate_text(value: float) -> str:
    """A pixel coordinate with all the digits of the float, as the real CSV has them: the shortest text
    that reads back to the same double (up to 17 significant digits, e.g. 322.8314606741573), in
    positional notation (a coordinate is never written with an exponent)."""
    return np.format_float_positional(float(value), unique=True, trim="-")


def _coordinate_rows(study_id: int, item: RenderedSlice) -> list[tuple]:
    return [
        (
            study_id,
            item.series_id,
            item.instance_number,
            condition,
            LEVELS[level],
            coordinate_text(x),
            coordinate_text(y),
        )
        for condition, level, x, y in item.coordinates
    ]


def _coordinate_order(row: tuple) -> tuple:
    """Study, series, instance, then condition and level in train.csv order (unknown conditions last)."""
    condition_rank = CONDITIONS.index(row[3]) if row[3] in CONDITIONS else len(CONDITIONS)
    return row[0], row[1], row[2], condition_rank, row[4]
