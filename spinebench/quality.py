"""Image quality metrics for the SpineBench-Sub selection (DESIGN 1.5).

All metrics are computed on the rendered image's grey levels scaled to [0, 1] (grey level / 255), so that
the subset thresholds in params.yaml do not depend on bit depth:

- `variance`: population variance of the grey levels (how much the intensities spread);
- `laplacian_variance`: population variance of the 3 x 3 Laplacian response [[0, 1, 0], [1, -4, 1], [0, 1, 0]]
  over the valid region (pixels with all four neighbours inside the image): a standard sharpness/focus score;
- `contrast`: RMS contrast, i.e. the population standard deviation of the grey levels.
"""

from __future__ import annotations

import numpy as np

# Column names of the images table (docs/contracts.md), in table order.
QUALITY_COLUMNS: tuple[str, ...] = ("variance", "laplacian_variance", "contrast")


# Grey levels are integers 0..255; metrics are defined on grey / 255.
_LEVELS = 255


def _check_grey(grey: np.ndarray) -> None:
    if grey.dtype != np.uint8 or grey.ndim != 2:
        raise ValueError(f"expected a 2-D uint8 grey image, got {grey.ndim}-D {grey.dtype}")


def exact_variance(values: np.ndarray) -> float:
    """Population variance of an integer array, computed exactly: (n * sum(x^2) - sum(x)^2) / n^2.

    Integer sums make a constant image exactly 0 (floating-point `np.var` leaves ~1e-32 residues) and do not
    depend on summation order. The final products use Python integers, which cannot overflow.
    """
    count = values.size
    total = int(values.sum(dtype=np.int64))
    total_of_squares = int(np.square(values, dtype=np.int64).sum())
    return (count * total_of_squares - total * total) / (count * count)


def laplacian(values: np.ndarray) -> np.ndarray:
    """The 4-neighbour Laplacian of a 2-D array over its valid region (shape reduced by 2 on each axis).

    Integer input gives an exact integer result (computed in int32, so uint8 input cannot wrap around).
    """
    if np.issubdtype(values.dtype, np.integer):
        values = values.astype(np.int32)
    centre = values[1:-1, 1:-1]
    return values[:-2, 1:-1] + values[2:, 1:-1] + values[1:-1, :-2] + values[1:-1, 2:] - 4 * centre


def image_quality(grey: np.ndarray) -> dict[str, float]:
    """Quality metrics (QUALITY_COLUMNS) of a rendered 8-bit grey image; see the module docstring.

    Computed exactly on the integer grey levels, then scaled to grey levels in [0, 1] (variances by 1/255^2).
    An image under 3 x 3 pixels has no valid Laplacian region: its `laplacian_variance` is NaN.
    """
    _check_grey(grey)
    scale = float(_LEVELS * _LEVELS)
    variance = exact_variance(grey) / scale
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        sharpness = float("nan")
    else:
        sharpness = exact_variance(laplacian(grey)) / scale
    return {"variance": variance, "laplacian_variance": sharpness, "contrast": float(np.sqrt(variance))}
