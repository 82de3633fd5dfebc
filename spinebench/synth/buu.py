"""Synthetic BUU-LSPINE_400 archive (SOURCES.md 3 and 6).

Writes `BUU-LSPINE_400.zip` holding `BUU-LSPINE_400/AP/{case}Y0.{jpg,csv}` and
`BUU-LSPINE_400/LA/{case}Y1.{jpg,csv}` with `case = {id:04d}-{F|M}-{age:03d}` (plus directory entries,
as zips made by archivers have). Each CSV is headerless, five columns `x1,y1,x2,y2,label` with values
like `876.2222,167.0618,1111.472,168.7665,0`: one row per endplate, cranial to caudal, AP 10 rows
(L1 superior, L1 inferior, ..., L5 inferior; left corner then right corner) and LA 11 rows (the same
plus S1 superior; anterior corner, which is the image LEFT, then posterior). The points are the
corners of the vertebral bodies drawn in the JPEG.

Counting. `counts["buu_cases"]` cases, each with both views: 2 x buu_cases valid images. A quarter of
the images carry spondylolisthesis (400 cases give 200 flagged films, which with the 24,415 RSNA images
make the paper's 24,615 localization questions): case roles repeat in blocks of 8 (assigned to case
numbers by a seeded permutation): 1 case slipped on both views, 1 on LA only, 1 on AP only, 5 normal,
i.e. 4 flagged images per 8 cases (a count that is not a multiple of 8 gets the first roles of a block).
A slip at disc k (L3/L4, L4/L5 or L5/S1) moves every vertebra above it: anteriorly (image left) on LA,
label 3 (anterolisthesis); sideways on AP, label 1 when towards the image left, 2 when towards the
image right. The flagged rows are the two endplates facing the slipped disc: the upper vertebra's
inferior endplate and the lower vertebra's superior endplate (on AP the S1 superior endplate has no
row, so an L5/S1 slip flags only the L5 inferior row). Every flagged film therefore has a row that maps
to a level under both `flag_level_rule` settings. All other rows are 0.

Films follow the real files: 8-bit greyscale baseline JPEGs, about one in five stored as RGB with three
identical channels; burned-in text (the case id, the view and a side letter) and one or two round
radiopaque markers; the lumbar column spans 15-20% of the film's width. Film size (`film_size`):
`compact` films are 380-440 pixels high (the demo and the tests); `realistic` films are 1,823-2,704 pixels
wide and 2,147-3,036 high, the real films' sizes, for benchmarks.

Decoys (`decoys=True`, two extra case ids after the counted ones):
- case N+1: `AP/{case}Y0.jpg` with a CSV of 9 rows instead of 10 (no LA files) -> bad CSV;
- case N+2: `LA/{case}Y1.jpg` with no CSV at all (no AP files)                  -> unlabelled image.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from spinebench.seeding import item_rng
from spinebench.synth import phantoms
from spinebench.synth.parallel import ordered_map
from spinebench.synth.writers import DeterministicZip, jpeg_bytes

ARCHIVE_NAME = "BUU-LSPINE_400.zip"
TOP = "BUU-LSPINE_400"
ANTEROLISTHESIS = 3
LATERO_LEFT, LATERO_RIGHT = 1, 2
# Case roles per block of 8 cases: which views show a slip.
ROLE_BLOCK = ("both", "la", "ap", "none", "none", "none", "none", "none")
SLIP_DISCS = (2, 3, 3, 3, 3, 4, 4, 4)  # L3/L4, L4/L5 (commonest), L5/S1


@dataclass(frozen=True)
class CasePlan:
    """One patient: id, sex, age and the slip shown on each view (None: normal)."""

    number: int
    sex: str
    age: int
    slip_disc: int | None
    slip_views: tuple[str, ...]  # subset of ("AP", "LA")

    @property
    def stem(self) -> str:
        return f"{self.number:04d}-{self.sex}-{self.age:03d}"


def plan_cases(seed: int, case_count: int) -> list[CasePlan]:
    """Cases 1..case_count with the slip roles spread by a seeded permutation."""
    order = item_rng(seed, "buu", "roles").permutation(case_count)
    cases = []
    for number in range(1, case_count + 1):
        rng = item_rng(seed, "buu", "case", number)
        role = ROLE_BLOCK[int(np.flatnonzero(order == number - 1)[0]) % len(ROLE_BLOCK)]
        views = {"both": ("AP", "LA"), "la": ("LA",), "ap": ("AP",), "none": ()}[role]
        cases.append(
            CasePlan(
                number=number,
                sex=str(rng.choice(["F", "M"])),
                age=int(rng.integers(18, 86)),
                slip_disc=int(rng.choice(SLIP_DISCS)) if views else None,
                slip_views=views,
            )
        )
    return cases


# Film sizes per `film_size`: compact heights, realistic (width, height) ranges of the real films.
COMPACT_HEIGHTS = (380, 441)
REALISTIC_WIDTHS, REALISTIC_HEIGHTS = (1823, 2705), (2147, 3037)
# Share of the films stored as RGB JPEGs with identical channels.
RGB_SHARE = 0.2


def film_shape(rng: np.random.Generator, film_size: str) -> tuple[int, int]:
    """(height, width) of one film."""
    if film_size == "realistic":
        width = int(rng.integers(*REALISTIC_WIDTHS))
        height = int(np.clip(width * rng.uniform(1.1, 1.2), *REALISTIC_HEIGHTS))
        return height, width
    if film_size == "compact":
        height = int(rng.integers(*COMPACT_HEIGHTS))
        return height, int(height * rng.uniform(0.72, 0.85))
    raise ValueError(f"film_size must be compact or realistic, got {film_size!r}")


def render_view(
    seed: int, case: CasePlan, view: str, film_size: str = "compact"
) -> tuple[bytes, list[tuple[float, float, float, float, int]]]:
    """The JPEG of one view and its endplate rows (x1, y1, x2, y2, label)."""
    rng = item_rng(seed, "buu", "view", case.number, view)
    lateral = view == "LA"
    height, width = film_shape(rng, film_size)
    spec = phantoms.lumbar_spec(rng, 1.0, (0.0, 0.0), lateral=lateral)
    spec = phantoms.fitted(spec, height, width, fill=_fill_for_width(spec, height, width, rng))
    label = 0
    if view in case.slip_views:
        shift = float(spec.widths[case.slip_disc] * rng.uniform(0.12, 0.25))
        if lateral:
            spec.slips[case.slip_disc] = -shift
            label = ANTEROLISTHESIS
        else:
            direction = float(rng.choice([-1.0, 1.0]))
            spec.slips[case.slip_disc] = direction * shift * 0.6
            label = LATERO_LEFT if direction < 0 else LATERO_RIGHT
    column = phantoms.build_column(spec)
    canvas = phantoms.render_radiograph(height, width, column, lateral, phantoms.RadiographLesions(), rng)
    _add_markers(canvas, column, rng)
    # Blur in compact-film pixels: a realistic film is the same anatomy at a finer sampling.
    detail = height / 410.0 if film_size == "realistic" else 1.0
    image = phantoms.finish_image(
        canvas, rng, blur=float(rng.uniform(0.8, 1.4)) * detail, noise=float(rng.uniform(0.01, 0.025))
    )
    pixels = phantoms.to_uint(image, 8)
    _burn_in_text(pixels, f"{case.stem} {view}", "R" if rng.random() < 0.5 else "L")
    rows = endplate_rows(column, lateral, case.slip_disc if label else None, label)
    return jpeg_bytes(pixels, rgb=bool(rng.random() < RGB_SHARE)), rows


def _fill_for_width(spec: phantoms.ColumnSpec, height: int, width: int, rng: np.random.Generator) -> float:
    """The column's share of the film height that makes its widest body span 15-20% of the film width."""
    length = float(np.sum(spec.heights) + np.sum(spec.disc_heights))
    share = float(rng.uniform(0.15, 0.20))
    return min(share * width * length / (float(np.max(spec.widths)) * height), 0.85)


def _add_markers(canvas: phantoms.Canvas, column: phantoms.Column, rng: np.random.Generator) -> None:
    """One or two round radiopaque markers (calibration balls) beside the column, clear of every corner."""
    corners = column.all_corners()
    radius = canvas.width * float(rng.uniform(0.012, 0.02))
    for _ in range(int(rng.integers(1, 3))):
        side = float(rng.choice([0.08, 0.92]))
        centre = (canvas.width * side, canvas.height * float(rng.uniform(0.15, 0.85)))
        if np.min(np.hypot(*(corners - centre).T)) > 3 * radius:
            canvas.paint(phantoms.ellipse(centre, (radius, radius)), 0.95)


def _burn_in_text(pixels: np.ndarray, label: str, side: str) -> None:
    """Burn white text into the film's top corners, in place: an id line and a side letter."""
    image = Image.fromarray(pixels, mode="L")
    draw = ImageDraw.Draw(image)
    size = max(10, pixels.shape[0] // 40)
    font = ImageFont.load_default(size=size)
    draw.text((size, size // 2), label, fill=255, font=font)
    draw.text((pixels.shape[1] - 2 * size, size // 2), side, fill=255, font=font)
    pixels[...] = np.asarray(image)


def endplate_rows(column: phantoms.Column, lateral: bool, slip_disc: int | None, label: int) -> list[tuple]:
    """Endplate lines cranial to caudal: L1 sup, L1 inf, ..., L5 inf (+ S1 sup on LA), each
    (x1, y1, x2, y2, label) with the left (anterior on LA) corner first; the two endplates facing
    the slipped disc carry `label`."""
    rows = []
    for index, vertebra in enumerate(column.vertebrae):
        corners = vertebra.corners
        plates = [("superior", corners[phantoms.TOP_LEFT], corners[phantoms.TOP_RIGHT])]
        plates.append(("inferior", corners[phantoms.BOTTOM_LEFT], corners[phantoms.BOTTOM_RIGHT]))
        if vertebra.name == "S1":
            if not lateral:
                break
            plates = plates[:1]
        for side, left, right in plates:
            facing = slip_disc is not None and (
                (side == "inferior" and index == slip_disc) or (side == "superior" and index == slip_disc + 1)
            )
            rows.append(
                (float(left[0]), float(left[1]), float(right[0]), float(right[1]), label if facing else 0)
            )
    return rows


def csv_text(rows: list[tuple]) -> bytes:
    """Headerless CSV with 7 significant digits, the style of the real files."""
    lines = [",".join([*(f"{value:.7g}" for value in row[:4]), str(int(row[4]))]) for row in rows]
    return ("\n".join(lines) + "\n").encode("ascii")


def write(
    out_dir: Path,
    counts: dict,
    seed: int,
    decoys: bool,
    workers: int | None = None,
    film_size: str = "compact",
) -> None:
    """Write the BUU zip into `out_dir` (see the module docstring); views render on `workers` processes."""
    cases = plan_cases(seed, int(counts["buu_cases"]))
    with DeterministicZip(Path(out_dir) / ARCHIVE_NAME) as archive:
        for folder in (f"{TOP}/", f"{TOP}/AP/", f"{TOP}/LA/"):
            archive.add_directory(folder)
        for view, suffix in (("AP", "Y0"), ("LA", "Y1")):
            rendered = ordered_map(
                functools.partial(render_view, seed, view=view, film_size=film_size), cases, workers
            )
            for case, (jpeg, rows) in zip(cases, rendered, strict=True):
                archive.add(f"{TOP}/{view}/{case.stem}{suffix}.jpg", jpeg, compress=False)
                archive.add(f"{TOP}/{view}/{case.stem}{suffix}.csv", csv_text(rows))
        if decoys:
            n = len(cases)
            short_csv = CasePlan(n + 1, "F", 50, None, ())
            jpeg, rows = render_view(seed, short_csv, "AP", film_size)
            archive.add(f"{TOP}/AP/{short_csv.stem}Y0.jpg", jpeg, compress=False)
            archive.add(f"{TOP}/AP/{short_csv.stem}Y0.csv", csv_text(rows[:9]))
            no_csv = CasePlan(n + 2, "M", 61, None, ())
            jpeg, _ = render_view(seed, no_csv, "LA", film_size)
            archive.add(f"{TOP}/LA/{no_csv.stem}Y1.jpg", jpeg, compress=False)
