"""Procedural spine phantoms shared by the four synthetic sources.

The images are drawn, not sampled from noise, so that their geometry carries the label: a narrowed disc
space is narrow, a slipped vertebra is displaced, a collapsed body is short, an osteophyte is a spur at a
body corner, a stenotic canal or foramen is small on MR, and a cervical column follows its curvature
class. Similar labels therefore give similar images, which the embedding-based distractor mining needs.

Three layers:
- `Canvas`: a float32 image that polygons and ellipses are painted onto (PIL rasterizes each shape in
  its bounding box, NumPy composes).
- Column geometry: `ColumnSpec` -> `build_column` -> `Column` of `Vertebra` quadrilaterals along a
  curved centre line, with slips, wedging and collapse applied. The same builder makes lumbar and
  cervical columns, lateral and AP views, X-ray and MR geometry.
- Renderers: `render_radiograph` (additive attenuation, bone bright), `render_mr_sagittal` and
  `render_mr_axial` (tissue-replacement painting with T1/T2 contrasts). `finish_image` adds blur,
  a smooth gain field and noise, all from the caller's seeded generator.

Coordinates are image pixels (x to the right, y down) unless a name says mm. Lateral views face the
patient's anterior to the image LEFT (as BUU laterals do), so "left" corners are anterior corners.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

# Corner order of a vertebra quadrilateral (image orientation).
TOP_LEFT, TOP_RIGHT, BOTTOM_RIGHT, BOTTOM_LEFT = range(4)
LUMBAR_NAMES = ("L1", "L2", "L3", "L4", "L5", "S1")
CERVICAL_NAMES = ("C2", "C3", "C4", "C5", "C6", "C7")


# --------------------------------------------------------------------------------------------------
# Canvas and shapes
# --------------------------------------------------------------------------------------------------
class Canvas:
    """A float32 image (height x width) that shapes are painted onto, additively or by replacement."""

    def __init__(self, height: int, width: int, fill: float = 0.0) -> None:
        self.pixels = np.full((height, width), fill, dtype=np.float32)

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    def _mask(self, points: np.ndarray):
        """Rows/cols slices of the shape's clipped bounding box and its boolean mask there (or None)."""
        points = np.asarray(points, dtype=np.float64)
        x0 = max(int(math.floor(points[:, 0].min())), 0)
        y0 = max(int(math.floor(points[:, 1].min())), 0)
        x1 = min(int(math.ceil(points[:, 0].max())) + 1, self.width)
        y1 = min(int(math.ceil(points[:, 1].max())) + 1, self.height)
        if x1 <= x0 or y1 <= y0:
            return None
        stamp = Image.new("L", (x1 - x0, y1 - y0), 0)
        ImageDraw.Draw(stamp).polygon([(x - x0, y - y0) for x, y in points], fill=1)
        return slice(y0, y1), slice(x0, x1), np.asarray(stamp, dtype=bool)

    def add(self, points: np.ndarray, value: float) -> None:
        """Add `value` inside the polygon (X-ray attenuation adds up where structures overlap)."""
        region = self._mask(points)
        if region is not None:
            rows, cols, mask = region
            window = self.pixels[rows, cols]  # a view: writing into it writes the canvas
            window[mask] += value

    def paint(self, points: np.ndarray, value: float) -> None:
        """Set the polygon's inside to `value` (MR tissue painting: later shapes cover earlier ones)."""
        region = self._mask(points)
        if region is not None:
            rows, cols, mask = region
            window = self.pixels[rows, cols]
            window[mask] = value


def ellipse(center, radii, angle: float = 0.0, vertices: int = 28) -> np.ndarray:
    """Polygon approximating an ellipse with semi-axes `radii`, rotated by `angle` radians."""
    theta = np.linspace(0.0, 2.0 * math.pi, vertices, endpoint=False)
    local = np.stack([radii[0] * np.cos(theta), radii[1] * np.sin(theta)], axis=1)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return local @ rotation.T + np.asarray(center, dtype=np.float64)


def shrink(points: np.ndarray, factor: float) -> np.ndarray:
    """The polygon scaled about its centroid (factor < 1 gives an inner outline, e.g. inside a cortex)."""
    points = np.asarray(points, dtype=np.float64)
    centre = points.mean(axis=0)
    return centre + (points - centre) * factor


def bounding_box(points: np.ndarray, margin: float = 0.0) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of the points, widened by `margin` pixels."""
    points = np.asarray(points, dtype=np.float64)
    return (
        float(points[:, 0].min() - margin),
        float(points[:, 1].min() - margin),
        float(points[:, 0].max() + margin),
        float(points[:, 1].max() + margin),
    )


# --------------------------------------------------------------------------------------------------
# Column geometry
# --------------------------------------------------------------------------------------------------
@dataclass
class Vertebra:
    """One vertebral body as a quadrilateral: corners TL, TR, BR, BL in image coordinates."""

    name: str
    corners: np.ndarray

    @property
    def center(self) -> np.ndarray:
        return self.corners.mean(axis=0)

    @property
    def axis(self) -> np.ndarray:
        """Unit vector from the superior to the inferior endplate."""
        top = (self.corners[TOP_LEFT] + self.corners[TOP_RIGHT]) / 2
        bottom = (self.corners[BOTTOM_LEFT] + self.corners[BOTTOM_RIGHT]) / 2
        vector = bottom - top
        return vector / np.linalg.norm(vector)

    @property
    def normal(self) -> np.ndarray:
        """Unit vector across the body towards the image right (posterior on laterals)."""
        axis = self.axis
        return np.array([axis[1], -axis[0]])  # (0, 1) down -> (1, 0) right

    @property
    def height(self) -> float:
        left = np.linalg.norm(self.corners[BOTTOM_LEFT] - self.corners[TOP_LEFT])
        right = np.linalg.norm(self.corners[BOTTOM_RIGHT] - self.corners[TOP_RIGHT])
        return float((left + right) / 2)

    @property
    def width(self) -> float:
        top = np.linalg.norm(self.corners[TOP_RIGHT] - self.corners[TOP_LEFT])
        bottom = np.linalg.norm(self.corners[BOTTOM_RIGHT] - self.corners[BOTTOM_LEFT])
        return float((top + bottom) / 2)

    def narrowed(self, factor: float) -> Vertebra:
        """The body with its width scaled about its centre line (an off-centre sagittal cut)."""
        corners = self.corners.copy()
        for left, right in ((TOP_LEFT, TOP_RIGHT), (BOTTOM_LEFT, BOTTOM_RIGHT)):
            middle = (self.corners[left] + self.corners[right]) / 2
            corners[left] = middle + (self.corners[left] - middle) * factor
            corners[right] = middle + (self.corners[right] - middle) * factor
        return Vertebra(self.name, corners)


@dataclass
class ColumnSpec:
    """Everything that shapes a column; lengths in the units of the output (pixels or mm).

    `curve` is one of "arc" (one bow, max at mid-column), "s" (one full sine period) or "flat";
    `curve_amplitude` is the signed horizontal offset of the bow (negative bows towards image left).
    `slips[k]` shifts every vertebra above disc k (between vertebra k and k+1) along the normal
    (negative: towards image left). `wedge[i]` removes that fraction of vertebra i's left-side height,
    `collapse[i]` that fraction of its whole height.
    """

    names: tuple[str, ...]
    heights: np.ndarray
    widths: np.ndarray
    disc_heights: np.ndarray
    top: tuple[float, float]
    tilt: float = 0.0
    curve: str = "flat"
    curve_amplitude: float = 0.0
    slips: dict[int, float] = field(default_factory=dict)
    wedge: dict[int, float] = field(default_factory=dict)
    collapse: dict[int, float] = field(default_factory=dict)


@dataclass
class Column:
    """A built column: vertebrae in cranial-to-caudal order, with discs between neighbours."""

    vertebrae: list[Vertebra]

    def index(self, name: str) -> int:
        return [v.name for v in self.vertebrae].index(name)

    def __getitem__(self, name: str) -> Vertebra:
        return self.vertebrae[self.index(name)]

    def disc(self, k: int) -> np.ndarray:
        """Polygon of disc k: between vertebra k's inferior and vertebra k+1's superior endplate."""
        upper, lower = self.vertebrae[k].corners, self.vertebrae[k + 1].corners
        return np.array([upper[BOTTOM_LEFT], upper[BOTTOM_RIGHT], lower[TOP_RIGHT], lower[TOP_LEFT]])

    def disc_centre(self, k: int) -> np.ndarray:
        return self.disc(k).mean(axis=0)

    def disc_posterior_mid(self, k: int) -> np.ndarray:
        """Midpoint of disc k's right edge (the posterior disc margin on laterals)."""
        upper, lower = self.vertebrae[k].corners, self.vertebrae[k + 1].corners
        return (upper[BOTTOM_RIGHT] + lower[TOP_RIGHT]) / 2

    def transformed(self, scale: float, offset: tuple[float, float]) -> Column:
        """The column mapped by p -> p * scale + offset (e.g. mm to pixels)."""
        offset = np.asarray(offset, dtype=np.float64)
        return Column([Vertebra(v.name, v.corners * scale + offset) for v in self.vertebrae])

    def all_corners(self) -> np.ndarray:
        return np.concatenate([v.corners for v in self.vertebrae])


def _curve_shape(curve: str, t: float) -> tuple[float, float]:
    """Offset profile f(t) and its derivative on t in [0, 1]."""
    if curve == "arc":
        return math.sin(math.pi * t), math.pi * math.cos(math.pi * t)
    if curve == "s":
        return math.sin(2 * math.pi * t), 2 * math.pi * math.cos(2 * math.pi * t)
    if curve == "flat":
        return 0.0, 0.0
    raise ValueError(f"unknown curve {curve!r}")


def build_column(spec: ColumnSpec) -> Column:
    """Stack the vertebrae of `spec` along its curved, tilted centre line and apply slips."""
    heights = np.asarray(spec.heights, dtype=np.float64) * np.array(
        [1.0 - spec.collapse.get(i, 0.0) for i in range(len(spec.names))]
    )
    discs = np.asarray(spec.disc_heights, dtype=np.float64)
    length = float(heights.sum() + discs.sum())
    down = np.array([math.sin(spec.tilt), math.cos(spec.tilt)])
    across = np.array([math.cos(spec.tilt), -math.sin(spec.tilt)])
    top = np.asarray(spec.top, dtype=np.float64)

    vertebrae = []
    arc = 0.0
    for i, name in enumerate(spec.names):
        middle = arc + heights[i] / 2
        offset, slope = _curve_shape(spec.curve, middle / length)
        centre = top + middle * down + spec.curve_amplitude * offset * across
        tangent = down + spec.curve_amplitude * slope / length * across
        tangent /= np.linalg.norm(tangent)
        normal = np.array([tangent[1], -tangent[0]])  # the downward tangent turned towards image right
        half_width = spec.widths[i] / 2
        left_half = heights[i] * (1.0 - spec.wedge.get(i, 0.0)) / 2
        right_half = heights[i] / 2
        corners = np.array(
            [
                centre - tangent * left_half - normal * half_width,
                centre - tangent * right_half + normal * half_width,
                centre + tangent * right_half + normal * half_width,
                centre + tangent * left_half - normal * half_width,
            ]
        )
        vertebrae.append(Vertebra(name, corners))
        arc += heights[i] + (discs[i] if i < len(discs) else 0.0)

    for disc_index, shift in spec.slips.items():
        normal = vertebrae[disc_index + 1].normal
        for upper in vertebrae[: disc_index + 1]:
            upper.corners = upper.corners + normal * shift
    return Column(vertebrae)


# --------------------------------------------------------------------------------------------------
# Lesion shapes (shared by the radiograph renderers and the VinDr boxes)
# --------------------------------------------------------------------------------------------------
def osteophyte(vertebra: Vertebra, corner: int, length: float) -> np.ndarray:
    """Triangular spur growing out of a body corner, outward and towards the adjacent disc."""
    corners, axis, normal = vertebra.corners, vertebra.axis, vertebra.normal
    outward = -normal if corner in (TOP_LEFT, BOTTOM_LEFT) else normal
    towards_disc = -axis if corner in (TOP_LEFT, TOP_RIGHT) else axis
    anchor = corners[corner]
    base = anchor - towards_disc * length * 0.8
    tip = anchor + outward * length + towards_disc * length * 0.45
    return np.array([anchor + outward * 0.5, base, tip])


def pedicle_screws(upper: Vertebra, lower: Vertebra, lateral: bool) -> list[np.ndarray]:
    """Metal of a one-level fusion: a screw in each body and the rod joining them."""
    shapes = []
    heads = []
    for body in (upper, lower):
        centre, normal = body.center, body.normal
        if lateral:
            start = centre + normal * body.width * 0.75
            end = centre - normal * body.width * 0.2
            heads.append(start)
            shapes.append(_thick_segment(start, end, body.height * 0.12))
        else:
            for side in (-1.0, 1.0):
                head = centre + normal * side * body.width * 0.32
                shapes.append(ellipse(head, (body.width * 0.07, body.height * 0.12), 0.0, 12))
                heads.append(head)
    if lateral:
        shapes.append(
            _thick_segment(heads[0] - upper.axis * 3, heads[1] + lower.axis * 3, upper.height * 0.1)
        )
    else:
        for side in (0, 1):
            shapes.append(_thick_segment(heads[side], heads[2 + side], upper.width * 0.04))
    return shapes


def _thick_segment(start: np.ndarray, end: np.ndarray, thickness: float) -> np.ndarray:
    """A rectangle of the given thickness around the segment start-end."""
    direction = end - start
    direction = direction / max(np.linalg.norm(direction), 1e-9)
    side = np.array([-direction[1], direction[0]]) * thickness / 2
    return np.array([start + side, end + side, end - side, start - side])


def foramen_outline(column: Column, disc_index: int, size: float) -> np.ndarray:
    """The neural foramen behind disc `disc_index` on a lateral view (a vertical oval)."""
    upper = column.vertebrae[disc_index]
    centre = (
        column.disc_posterior_mid(disc_index)
        + upper.normal * upper.width * 0.22
        - upper.axis * upper.height * 0.15
    )
    return ellipse(
        centre, (upper.width * 0.12 * size, upper.height * 0.38 * size), _angle_of(upper.axis) - math.pi / 2
    )


def _angle_of(vector: np.ndarray) -> float:
    return math.atan2(vector[1], vector[0])


# --------------------------------------------------------------------------------------------------
# Radiographs
# --------------------------------------------------------------------------------------------------
@dataclass
class RadiographLesions:
    """What a radiograph shows besides the normal column (drawn on top of it)."""

    osteophytes: list[tuple[str, int, float]] = field(default_factory=list)  # (vertebra, corner, length)
    narrowed_foramina: dict[int, float] = field(default_factory=dict)  # disc index -> foramen size factor
    implants: list[tuple[str, str]] = field(default_factory=list)  # (upper, lower) vertebra names
    sclerotic: list[tuple[str, float]] = field(default_factory=list)  # (vertebra, radius factor)


def render_radiograph(
    height: int,
    width: int,
    column: Column,
    lateral: bool,
    lesions: RadiographLesions,
    rng: np.random.Generator,
) -> Canvas:
    """An X-ray attenuation map (bone bright) of `column` with its lesions, before finishing.

    The region (lumbar or cervical) is read from the vertebra names; it decides the surrounding
    anatomy (pelvis and ribs, or skull base, mandible and shoulders).
    """
    canvas = Canvas(height, width, fill=0.04)
    centre = column.all_corners().mean(axis=0)
    extent = np.ptp(column.all_corners(), axis=0)
    soft_radii = (max(extent[0] * 2.4, width * 0.42), max(extent[1] * 0.9, height * 0.62))
    canvas.add(ellipse(centre + (rng.normal(0, 0.03) * width, 0), soft_radii), 0.22)
    canvas.add(ellipse(centre, (soft_radii[0] * 0.7, soft_radii[1] * 0.95)), 0.06)
    if column.vertebrae[0].name.startswith("C"):
        _draw_cervical_surroundings(canvas, column, lateral)
    else:
        _draw_lumbar_surroundings(canvas, column, lateral)
    for vertebra in column.vertebrae:
        _draw_posterior_elements(canvas, vertebra, lateral)
    for vertebra in column.vertebrae:
        canvas.add(vertebra.corners, 0.30)
        canvas.add(shrink(vertebra.corners, 0.82), -0.10)  # trabecular inside: the cortex rim stays brighter
        if vertebra.name == "C2" and lateral:
            canvas.add(_dens(vertebra), 0.28)
    for name, corner, length in lesions.osteophytes:
        canvas.add(osteophyte(column[name], corner, length), 0.30)
    if lateral:
        for k in range(len(column.vertebrae) - 1):
            size = lesions.narrowed_foramina.get(k, 1.0)
            canvas.add(foramen_outline(column, k, size), -0.12)
    for name, radius in lesions.sclerotic:
        body = column[name]
        canvas.add(ellipse(body.center, (body.width * radius, body.height * radius * 0.8)), 0.22)
    for upper, lower in lesions.implants:
        for shape in pedicle_screws(column[upper], column[lower], lateral):
            canvas.add(shape, 0.75)
    return canvas


def _draw_lumbar_surroundings(canvas: Canvas, column: Column, lateral: bool) -> None:
    """Iliac wings around the sacrum and the lowest ribs beside L1."""
    sacrum, top = column.vertebrae[-1], column.vertebrae[0]
    scale = sacrum.width
    if lateral:
        canvas.add(
            ellipse(sacrum.center + sacrum.normal * scale * 0.5, (scale * 1.1, scale * 1.3), 0.3), 0.10
        )
    else:
        for side in (-1.0, 1.0):
            wing = sacrum.center + sacrum.normal * side * scale * 1.25 - sacrum.axis * scale * 0.35
            canvas.add(ellipse(wing, (scale * 0.75, scale * 1.0), side * 0.5), 0.12)
            canvas.add(ellipse(wing, (scale * 0.55, scale * 0.8), side * 0.5), -0.05)
    for side in (-1.0, 1.0) if not lateral else (1.0,):
        rib = top.center + top.normal * side * top.width * 1.3 - top.axis * top.height * 0.6
        canvas.add(ellipse(rib, (top.width * 0.9, top.height * 0.12), side * 0.35), 0.07)


def _draw_cervical_surroundings(canvas: Canvas, column: Column, lateral: bool) -> None:
    """Skull base and mandible above C2, shoulders beside C7."""
    c2, c7 = column.vertebrae[0], column.vertebrae[-1]
    scale = c2.width
    if lateral:
        canvas.add(
            ellipse(c2.center + c2.normal * scale * 1.6 - c2.axis * scale * 2.2, (scale * 2.6, scale * 1.3)),
            0.20,
        )
        jaw = c2.center - c2.normal * scale * 2.0 - c2.axis * scale * 0.6
        canvas.add(ellipse(jaw, (scale * 1.6, scale * 0.35), -0.5), 0.16)
        canvas.add(
            ellipse(c7.center + c7.normal * scale * 0.8 + c7.axis * scale * 1.6, (scale * 2.8, scale * 1.0)),
            0.12,
        )
    else:
        for side in (-1.0, 1.0):
            shoulder = c7.center + c7.normal * side * scale * 3.2 + c7.axis * scale * 1.0
            canvas.add(ellipse(shoulder, (scale * 2.2, scale * 0.9), side * 0.2), 0.14)
            canvas.add(
                ellipse(
                    c2.center + c2.normal * side * scale * 1.9 - c2.axis * scale * 0.4,
                    (scale * 0.5, scale * 1.2),
                ),
                0.10,
            )


def _dens(c2: Vertebra) -> np.ndarray:
    """The odontoid process on top of C2 (lateral view)."""
    corners, axis, normal = c2.corners, c2.axis, c2.normal
    top_mid = (corners[TOP_LEFT] + corners[TOP_RIGHT]) / 2
    half = c2.width * 0.22
    return np.array(
        [
            top_mid - normal * half,
            top_mid - normal * half * 0.8 - axis * c2.height * 0.55,
            top_mid + normal * half * 0.8 - axis * c2.height * 0.55,
            top_mid + normal * half,
        ]
    )


def _draw_posterior_elements(canvas: Canvas, vertebra: Vertebra, lateral: bool) -> None:
    """Pedicles, laminae, processes: behind the body on laterals, over and beside it on AP views."""
    if vertebra.name == "S1":
        return
    corners, axis, normal = vertebra.corners, vertebra.axis, vertebra.normal
    h, w = vertebra.height, vertebra.width
    if lateral:
        root_top = corners[TOP_RIGHT] + axis * h * 0.05
        root_bottom = corners[TOP_RIGHT] + axis * h * 0.55
        lamina = root_bottom + normal * w * 0.45
        tip = root_top + normal * w * 1.05 + axis * h * 0.55
        canvas.add(np.array([root_top, root_top + normal * w * 0.5, tip, lamina, root_bottom]), 0.16)
    else:
        for side in (-1.0, 1.0):
            pedicle = vertebra.center + normal * side * w * 0.3 - axis * h * 0.18
            canvas.add(ellipse(pedicle, (w * 0.08, h * 0.16)), 0.12)
            process = np.array(
                [
                    pedicle - axis * h * 0.08,
                    pedicle + normal * side * w * 0.45 - axis * h * 0.04,
                    pedicle + normal * side * w * 0.45 + axis * h * 0.08,
                    pedicle + axis * h * 0.1,
                ]
            )
            canvas.add(process, 0.08)
        canvas.add(ellipse(vertebra.center + axis * h * 0.3, (w * 0.07, h * 0.22)), 0.10)


def finish_image(
    canvas: Canvas, rng: np.random.Generator, blur: float, noise: float, gain_slope: float = 0.12
) -> np.ndarray:
    """Blur, a smooth multiplicative gain field, additive noise; clipped to [0, 1]."""
    pixels = gaussian_filter(canvas.pixels, blur) if blur > 0 else canvas.pixels.copy()
    rows = np.linspace(-0.5, 0.5, canvas.height, dtype=np.float32)[:, None]
    cols = np.linspace(-0.5, 0.5, canvas.width, dtype=np.float32)[None, :]
    slope_y, slope_x = rng.uniform(-gain_slope, gain_slope, size=2)
    pixels = pixels * (1.0 + np.float32(slope_y) * rows + np.float32(slope_x) * cols)
    pixels = pixels + rng.normal(0.0, noise, size=pixels.shape).astype(np.float32)
    return np.clip(pixels, 0.0, 1.0)


def to_uint(pixels: np.ndarray, bits: int) -> np.ndarray:
    """[0, 1] floats quantized to `bits`-bit unsigned integers (uint8 up to 8 bits, else uint16)."""
    top = (1 << bits) - 1
    dtype = np.uint8 if bits <= 8 else np.uint16
    return np.rint(np.clip(pixels, 0.0, 1.0) * top).astype(dtype)


# --------------------------------------------------------------------------------------------------
# Typical columns
# --------------------------------------------------------------------------------------------------
def lumbar_spec(
    rng: np.random.Generator, scale: float, top: tuple[float, float], lateral: bool
) -> ColumnSpec:
    """A normal adult lumbar column L1-S1 (`scale` pixels per mm): lordotic on laterals, straight on AP."""
    heights_mm = np.array([26, 27, 27.5, 27.5, 26.5, 34.0]) * rng.uniform(0.92, 1.08)
    widths_mm = (
        np.array([34, 35, 36, 37, 37, 40.0]) if lateral else np.array([42, 44, 46, 48, 50, 56.0])
    ) * rng.uniform(0.92, 1.08)
    discs_mm = np.array([8.5, 9.5, 10.5, 11.0, 10.0]) * rng.uniform(0.85, 1.15, size=5)
    return ColumnSpec(
        names=LUMBAR_NAMES,
        heights=heights_mm * scale,
        widths=widths_mm * scale,
        disc_heights=discs_mm * scale,
        top=top,
        tilt=float(rng.normal(0.0, 0.04)),
        curve="arc",
        curve_amplitude=float((-rng.uniform(8, 16) if lateral else rng.normal(0, 3)) * scale),
    )


def cervical_spec(
    rng: np.random.Generator, scale: float, top: tuple[float, float], curvature: str, lateral: bool = True
) -> ColumnSpec:
    """A C2-C7 column (`scale` pixels per mm) whose centre line follows a curvature class.

    curvature: lordotic (bows towards the image left = anterior), straight, sigmoid1 (upper half
    lordotic, lower half kyphotic), sigmoid2 (the reverse), kyphotic (bows posterior).
    """
    heights_mm = np.array([22, 13.5, 13.5, 13.5, 14, 14.5]) * rng.uniform(0.92, 1.08)
    widths_mm = (
        np.array([16, 16, 16.5, 17, 17.5, 18.0]) if lateral else np.array([20, 22, 23, 24, 25, 26.0])
    ) * rng.uniform(0.92, 1.08)
    discs_mm = np.array([5.0, 5.5, 5.5, 5.5, 5.0]) * rng.uniform(0.85, 1.15, size=5)
    amplitude = rng.uniform(11, 16)
    shapes = {
        "lordotic": ("arc", -amplitude),
        "straight": ("flat", 0.0),
        "sigmoid1": ("s", -amplitude * 0.6),
        "sigmoid2": ("s", amplitude * 0.6),
        "kyphotic": ("arc", amplitude * 0.8),
    }
    curve, bow = shapes[curvature] if lateral else ("flat", 0.0)
    return ColumnSpec(
        names=CERVICAL_NAMES,
        heights=heights_mm * scale,
        widths=widths_mm * scale,
        disc_heights=discs_mm * scale,
        top=top,
        tilt=float(rng.normal(0.0, 0.05)),
        curve=curve,
        curve_amplitude=float(bow * scale),
    )


def fitted(spec: ColumnSpec, height: int, width: int, fill: float = 0.78) -> ColumnSpec:
    """The spec rescaled and moved so that its column spans about `fill` of the image height, centred."""
    length = float(np.sum(spec.heights) + np.sum(spec.disc_heights))
    factor = fill * height / length
    scaled = replace(
        spec,
        heights=np.asarray(spec.heights) * factor,
        widths=np.asarray(spec.widths) * factor,
        disc_heights=np.asarray(spec.disc_heights) * factor,
        curve_amplitude=spec.curve_amplitude * factor,
        slips={k: v * factor for k, v in spec.slips.items()},
        wedge=dict(spec.wedge),
        collapse=dict(spec.collapse),
    )
    draft = build_column(replace(scaled, top=(0.0, 0.0)))
    low, high = draft.all_corners().min(axis=0), draft.all_corners().max(axis=0)
    shift = np.array([width / 2, height / 2]) - (low + high) / 2
    return replace(scaled, top=(float(shift[0]), float(shift[1])))


# --------------------------------------------------------------------------------------------------
# MR
# --------------------------------------------------------------------------------------------------
MR_CONTRAST = {
    "T1": {
        "air": 0.02, "fat": 0.85, "muscle": 0.30, "viscera": 0.40, "marrow": 0.62, "cortex": 0.07,
        "disc": 0.33, "nucleus": 0.38, "csf": 0.14, "ligament": 0.10, "nerve": 0.32, "foramen_fat": 0.82,
    },
    "T2": {
        "air": 0.02, "fat": 0.62, "muscle": 0.22, "viscera": 0.45, "marrow": 0.45, "cortex": 0.05,
        "disc": 0.28, "nucleus": 0.82, "csf": 0.92, "ligament": 0.08, "nerve": 0.30, "foramen_fat": 0.60,
    },
}  # fmt: skip

# Shrink of a structure per severity grade (0 Normal/Mild, 1 Moderate, 2 Severe).
STENOSIS_NARROWING = (0.0, 0.35, 0.65)


@dataclass
class LumbarMrAnatomy:
    """One patient's lumbar spine for MR, in mm, shared by all of a study's series.

    `column_mm` is the mid-sagittal column (x: anterior -> posterior, y: cranial -> caudal).
    Severities are grades 0..2 per disc index (0 = L1/L2 ... 4 = L5/S1).
    """

    column_mm: Column
    canal_depth_mm: float
    canal_width_mm: float
    body_half_width_mm: float
    foramen_offset_mm: float
    canal_grade: tuple[int, ...]
    foramen_grade: dict[str, tuple[int, ...]]  # side ("L"/"R") -> grades
    recess_grade: dict[str, tuple[int, ...]]
    disc_degeneration: tuple[float, ...]


@dataclass(frozen=True)
class SagittalFrame:
    """Maps anatomy mm (x: anterior -> posterior, y: cranial -> caudal) to the pixels of a sagittal image."""

    size: int
    spacing_mm: float
    origin_mm: tuple[float, float]

    def column(self, anatomy: LumbarMrAnatomy) -> Column:
        origin = np.asarray(self.origin_mm, dtype=np.float64)
        return anatomy.column_mm.transformed(1.0 / self.spacing_mm, tuple(-origin / self.spacing_mm))


def sagittal_landmarks(anatomy: LumbarMrAnatomy, frame: SagittalFrame) -> dict:
    """Pixel positions of what is labelled on sagittal slices, per disc index k:
    ("canal", k) the middle of the (possibly narrowed) canal behind the disc, and
    ("foramen", side, k) the foramen centre (identical in-plane position on both sides).
    """
    column = frame.column(anatomy)
    depth = anatomy.canal_depth_mm / frame.spacing_mm
    landmarks: dict = {}
    for k, grade in enumerate(anatomy.canal_grade):
        upper = column.vertebrae[k]
        narrowing = STENOSIS_NARROWING[grade]
        bulge, flavum = depth * (0.12 + 0.45 * narrowing), depth * (0.10 + 0.35 * narrowing)
        landmarks[("canal", k)] = tuple(
            column.disc_posterior_mid(k) + upper.normal * (bulge + depth - flavum) / 2
        )
        centre = (
            column.disc_posterior_mid(k) + upper.normal * upper.width * 0.2 - upper.axis * upper.height * 0.1
        )
        for side in ("L", "R"):
            landmarks[("foramen", side, k)] = tuple(centre)
    return landmarks


def render_mr_sagittal(
    anatomy: LumbarMrAnatomy, lateral_mm: float, weighting: str, frame: SagittalFrame
) -> Canvas:
    """A sagittal slice `lateral_mm` from the midline (positive: patient left).

    Mid-sagittal slices show the canal (narrowed at each disc by its grade) and spinous processes;
    slices near the foramen offset show pedicles and that side's foramina (shrunk by grade).
    """
    tissue = MR_CONTRAST[weighting]
    size, mm = frame.size, 1.0 / frame.spacing_mm
    canvas = Canvas(size, size, fill=tissue["air"])
    column = frame.column(anatomy)
    normal = column.vertebrae[2].normal
    back = column.vertebrae[2].corners[TOP_RIGHT]
    # Torso: viscera in front, paraspinal muscle behind the spine, subcutaneous fat, then air.
    canvas.paint(np.array([[0, 0], [size, 0], [size, size], [0, size]], dtype=float), tissue["viscera"])
    skin_x = back[0] + normal[0] * 95 * mm
    fat_x = skin_x - 18 * mm
    muscle_x = back[0] + normal[0] * 20 * mm
    canvas.paint(np.array([[muscle_x, 0], [fat_x, 0], [fat_x, size], [muscle_x, size]]), tissue["muscle"])
    canvas.paint(np.array([[fat_x, 0], [skin_x, 0], [skin_x, size], [fat_x, size]]), tissue["fat"])
    canvas.paint(np.array([[skin_x, 0], [size, 0], [size, size], [skin_x, size]]), tissue["air"])

    off_centre = abs(lateral_mm) / anatomy.body_half_width_mm
    width_factor = math.sqrt(max(0.0, 1.0 - off_centre**2))
    if width_factor > 0.25:
        for k in range(len(column.vertebrae) - 1):
            disc = column.disc(k)
            canvas.paint(disc, tissue["disc"])
            if width_factor > 0.6:
                health = 1.0 - anatomy.disc_degeneration[k]
                nucleus_value = tissue["disc"] + (tissue["nucleus"] - tissue["disc"]) * health
                upper = column.vertebrae[k]
                thickness = float(np.linalg.norm((disc[2] + disc[3]) / 2 - (disc[0] + disc[1]) / 2))
                radii = (upper.width * 0.3 * width_factor, max(thickness * 0.3, 1.0))
                canvas.paint(ellipse(disc.mean(axis=0), radii, _angle_of(upper.normal)), nucleus_value)
        for vertebra in column.vertebrae:
            body = vertebra.narrowed(width_factor)
            canvas.paint(body.corners, tissue["cortex"])
            canvas.paint(shrink(body.corners, 0.86), tissue["marrow"])

    if abs(lateral_mm) < anatomy.canal_width_mm / 2:
        _paint_sagittal_canal(canvas, column, anatomy, tissue, mm)
    if abs(lateral_mm) < 7:
        for vertebra in column.vertebrae[:-1]:
            _paint_spinous_process(canvas, vertebra, anatomy.canal_depth_mm * mm, tissue)
    if abs(abs(lateral_mm) - anatomy.foramen_offset_mm) < 10:
        side = "L" if lateral_mm > 0 else "R"
        _paint_foramina(canvas, column, anatomy.foramen_grade[side], tissue)
    return canvas


def _paint_sagittal_canal(canvas, column, anatomy, tissue, mm) -> None:
    """The CSF-filled canal behind the bodies, narrowed at each disc by bulge and ligament by grade."""
    depth = anatomy.canal_depth_mm * mm
    walls = [v.corners[[TOP_RIGHT, BOTTOM_RIGHT]] for v in column.vertebrae]
    front = np.concatenate(walls)
    back = front + np.array([v.normal for v in column.vertebrae for _ in range(2)]) * depth
    canvas.paint(np.concatenate([front, back[::-1]]), tissue["csf"])
    for vertebra in column.vertebrae[:-1]:  # ligamentum flavum behind the canal, a dark band
        base = vertebra.corners[BOTTOM_RIGHT] + vertebra.normal * depth
        canvas.paint(
            ellipse(base, (depth * 0.18, vertebra.height * 0.3), _angle_of(vertebra.normal)),
            tissue["ligament"],
        )
    for k, grade in enumerate(anatomy.canal_grade):
        narrowing = STENOSIS_NARROWING[grade]
        upper = column.vertebrae[k]
        front_mid = column.disc_posterior_mid(k)
        bulge = depth * (0.12 + 0.45 * narrowing)
        flavum = depth * (0.10 + 0.35 * narrowing)
        angle = _angle_of(upper.normal)
        span = upper.height * 0.32
        canvas.paint(ellipse(front_mid, (bulge, span), angle), tissue["disc"])
        canvas.paint(ellipse(front_mid + upper.normal * depth, (flavum, span), angle), tissue["ligament"])


def _paint_spinous_process(canvas, vertebra, canal_depth, tissue) -> None:
    """Lamina and spinous process of a mid-sagittal slice."""
    corners, axis, normal = vertebra.corners, vertebra.axis, vertebra.normal
    root = corners[TOP_RIGHT] + normal * canal_depth * 1.05
    outline = np.array(
        [
            root + axis * vertebra.height * 0.05,
            root + normal * vertebra.width * 0.9 + axis * vertebra.height * 0.25,
            root + normal * vertebra.width * 0.9 + axis * vertebra.height * 0.75,
            root + axis * vertebra.height * 0.85,
        ]
    )
    canvas.paint(outline, tissue["cortex"])
    canvas.paint(shrink(outline, 0.75), tissue["marrow"])


def _paint_foramina(canvas, column, grades, tissue) -> None:
    """Pedicles and the fat-filled foramina between them, each narrowed by its grade."""
    for vertebra in column.vertebrae[:-1]:
        pedicle = (
            vertebra.corners[TOP_RIGHT]
            + vertebra.normal * vertebra.width * 0.18
            + vertebra.axis * vertebra.height * 0.35
        )
        canvas.paint(ellipse(pedicle, (vertebra.width * 0.16, vertebra.height * 0.33)), tissue["cortex"])
        canvas.paint(ellipse(pedicle, (vertebra.width * 0.11, vertebra.height * 0.25)), tissue["marrow"])
    for k, grade in enumerate(grades):
        size = 1.0 - STENOSIS_NARROWING[grade]
        upper = column.vertebrae[k]
        centre = (
            column.disc_posterior_mid(k) + upper.normal * upper.width * 0.2 - upper.axis * upper.height * 0.1
        )
        radii = (upper.width * 0.13 * (0.45 + 0.55 * size), upper.height * 0.36 * (0.4 + 0.6 * size))
        canvas.paint(ellipse(centre, radii), tissue["foramen_fat"])
        canvas.paint(
            ellipse(centre - upper.axis * radii[1] * 0.35, (radii[0] * 0.45, radii[0] * 0.45)),
            tissue["nerve"],
        )


@dataclass(frozen=True)
class AxialFrame:
    """Maps axial-plane mm (x: patient right -> left, y: anterior -> posterior, origin at the front
    of the canal) to pixels: radiological view, patient right on the image left, anterior up."""

    size: int
    spacing_mm: float
    centre_px: tuple[float, float]

    def at(self, x_mm: float, y_mm: float) -> tuple[float, float]:
        return self.centre_px[0] + x_mm / self.spacing_mm, self.centre_px[1] + y_mm / self.spacing_mm


def _axial_canal_depth(anatomy: LumbarMrAnatomy, disc_index: int) -> float:
    return anatomy.canal_depth_mm * (1.0 - 0.5 * STENOSIS_NARROWING[anatomy.canal_grade[disc_index]])


def _recess_mm(anatomy: LumbarMrAnatomy, disc_index: int, sign: int) -> tuple[float, float]:
    return sign * anatomy.canal_width_mm * 0.42, 3.0 + _axial_canal_depth(anatomy, disc_index) * 0.75


def axial_landmarks(anatomy: LumbarMrAnatomy, frame: AxialFrame, disc_index: int) -> dict:
    """Pixel positions labelled on an axial slice through disc `disc_index`:
    ("canal", k) the canal centre and ("recess", side, k) each subarticular recess (side "L"/"R").
    """
    depth = _axial_canal_depth(anatomy, disc_index)
    landmarks = {("canal", disc_index): frame.at(0.0, 3.0 + depth / 2)}
    for side, sign in (("R", -1), ("L", 1)):
        landmarks[("recess", side, disc_index)] = frame.at(*_recess_mm(anatomy, disc_index, sign))
    return landmarks


def render_mr_axial(
    anatomy: LumbarMrAnatomy, disc_index: int, offset_mm: float, weighting: str, frame: AxialFrame
) -> Canvas:
    """An axial slice `offset_mm` below the centre of disc `disc_index`.

    Through the disc it shows the disc, otherwise the vertebral body; the canal is shrunk by the canal
    grade and each subarticular recess is covered by facet and ligament hypertrophy by its grade.
    """
    tissue = MR_CONTRAST[weighting]
    mm = 1.0 / frame.spacing_mm
    at = frame.at
    canvas = Canvas(frame.size, frame.size, fill=tissue["air"])
    canvas.paint(ellipse(at(0, 5), (150 * mm, 115 * mm), 0, 48), tissue["fat"])
    canvas.paint(ellipse(at(0, 0), (135 * mm, 100 * mm), 0, 48), tissue["viscera"])
    for side in (-1, 1):
        canvas.paint(ellipse(at(side * 26, 50), (22 * mm, 24 * mm)), tissue["muscle"])  # erector spinae
        canvas.paint(ellipse(at(side * 38, -12), (13 * mm, 18 * mm)), tissue["muscle"])  # psoas
    disc_half = float(np.ptp(anatomy.column_mm.disc(disc_index)[:, 1])) / 2
    body_centre = at(0, -18)
    if abs(offset_mm) <= disc_half + 0.5:
        health = 1.0 - anatomy.disc_degeneration[disc_index]
        canvas.paint(ellipse(body_centre, (25 * mm, 19 * mm)), tissue["disc"])
        nucleus_value = tissue["disc"] + (tissue["nucleus"] - tissue["disc"]) * health
        canvas.paint(ellipse(body_centre, (13 * mm, 9 * mm)), nucleus_value)
    else:
        canvas.paint(ellipse(body_centre, (24 * mm, 18 * mm)), tissue["cortex"])
        canvas.paint(ellipse(body_centre, (21 * mm, 15.5 * mm)), tissue["marrow"])

    canal_depth = _axial_canal_depth(anatomy, disc_index)
    canal_radii = (anatomy.canal_width_mm / 2 * mm, canal_depth / 2 * mm)
    canvas.paint(ellipse(at(0.0, 3.0 + canal_depth / 2), canal_radii, 0, 24), tissue["csf"])
    for side, sign in (("R", -1), ("L", 1)):
        narrowing = STENOSIS_NARROWING[anatomy.recess_grade[side][disc_index]]
        recess = _recess_mm(anatomy, disc_index, sign)
        canvas.paint(ellipse(at(*recess), (4.5 * mm, 3.5 * mm)), tissue["csf"])
        canvas.paint(ellipse(at(recess[0], recess[1] - 1.0), (1.6 * mm, 1.6 * mm)), tissue["nerve"])
        # Facet and ligamentum flavum hypertrophy grow into the recess from behind.
        facet = (sign * (anatomy.canal_width_mm * 0.55 + 6), recess[1] + 9 - 6.5 * narrowing)
        canvas.paint(
            ellipse(at(*facet), ((6 + 4 * narrowing) * mm, (5 + 3 * narrowing) * mm)), tissue["cortex"]
        )
        canvas.paint(
            ellipse(at(*facet), ((4 + 3 * narrowing) * mm, (3 + 2 * narrowing) * mm)), tissue["marrow"]
        )
        flavum = (sign * anatomy.canal_width_mm * 0.3, recess[1] + 4.5 - 4.0 * narrowing)
        flavum_radii = ((3.5 + 3 * narrowing) * mm, (1.5 + 2.5 * narrowing) * mm)
        canvas.paint(ellipse(at(*flavum), flavum_radii, sign * 0.5), tissue["ligament"])
    spinous_base = np.array(at(0, 3.0 + canal_depth + 4))
    for sign in (-1, 1):  # laminae from the facets to the spinous process
        facet = np.array(at(sign * (anatomy.canal_width_mm * 0.55 + 4), 3.0 + canal_depth * 0.9))
        canvas.paint(_thick_segment(facet, spinous_base, 4.0 * mm), tissue["cortex"])
    canvas.paint(
        _thick_segment(spinous_base, np.array(at(0, 3.0 + canal_depth + 34)), 6.0 * mm), tissue["cortex"]
    )
    canvas.paint(
        _thick_segment(spinous_base, np.array(at(0, 3.0 + canal_depth + 32)), 3.0 * mm), tissue["marrow"]
    )
    return canvas


def lumbar_mr_anatomy(
    rng: np.random.Generator,
    canal_grade: tuple[int, ...],
    foramen_grade: dict[str, tuple[int, ...]],
    recess_grade: dict[str, tuple[int, ...]],
) -> LumbarMrAnatomy:
    """A patient's lumbar anatomy in mm whose stenoses follow the given grades (0..2 per disc).

    Degenerated (dark) discs go with the worse grades, as they do clinically.
    """
    column = build_column(lumbar_spec(rng, 1.0, (0.0, 0.0), lateral=True))
    worst = [
        max(
            canal_grade[k],
            foramen_grade["L"][k],
            foramen_grade["R"][k],
            recess_grade["L"][k],
            recess_grade["R"][k],
        )
        for k in range(len(canal_grade))
    ]
    degeneration = tuple(
        float(np.clip(0.15 + 0.3 * grade + rng.normal(0, 0.1), 0.0, 0.95)) for grade in worst
    )
    return LumbarMrAnatomy(
        column_mm=column,
        canal_depth_mm=float(rng.uniform(14, 18)),
        canal_width_mm=float(rng.uniform(20, 25)),
        body_half_width_mm=float(rng.uniform(22, 26)),
        foramen_offset_mm=float(rng.uniform(14, 18)),
        canal_grade=tuple(canal_grade),
        foramen_grade={side: tuple(grades) for side, grades in foramen_grade.items()},
        recess_grade={side: tuple(grades) for side, grades in recess_grade.items()},
        disc_degeneration=degeneration,
    )


def finish_mr(canvas: Canvas, rng: np.random.Generator, noise: float) -> np.ndarray:
    """MR finishing: slight blur, coil-like gain field and Rician (magnitude) noise, in [0, 1]."""
    pixels = gaussian_filter(canvas.pixels, 0.7)
    rows = np.linspace(-0.5, 0.5, canvas.height, dtype=np.float32)[:, None]
    cols = np.linspace(-0.5, 0.5, canvas.width, dtype=np.float32)[None, :]
    slope_y, slope_x = rng.uniform(-0.25, 0.25, size=2)
    pixels = pixels * (1.0 + np.float32(slope_y) * rows + np.float32(slope_x) * cols)
    real = pixels + rng.normal(0.0, noise, size=pixels.shape).astype(np.float32)
    imaginary = rng.normal(0.0, noise, size=pixels.shape).astype(np.float32)
    return np.clip(np.sqrt(real * real + imaginary * imaginary), 0.0, 1.0)
