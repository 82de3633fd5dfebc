"""Quality metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spinebench.quality import QUALITY_COLUMNS, image_quality, laplacian


def test_constant_image_has_zero_metrics():
    assert image_quality(np.full((10, 12), 173, dtype=np.uint8)) == {
        "variance": 0.0,
        "laplacian_variance": 0.0,
        "contrast": 0.0,
    }


def test_checkerboard():
    rows, columns = np.indices((8, 8))
    board = ((rows + columns) % 2 * 255).astype(np.uint8)
    quality = image_quality(board)
    # grey levels 0 and 1, half each: variance 1/4, RMS contrast 1/2
    assert quality["variance"] == pytest.approx(0.25)
    assert quality["contrast"] == pytest.approx(0.5)
    # every interior pixel differs from its four neighbours by 1: Laplacian +-4, half each -> variance 16
    assert set(np.unique(laplacian(board / 255.0))) == {-4.0, 4.0}
    assert quality["laplacian_variance"] == pytest.approx(16.0)


def test_single_bright_pixel():
    image = np.zeros((3, 4), dtype=np.uint8)
    image[1, 1] = 255
    quality = image_quality(image)
    # one pixel of 1 among 12: mean 1/12, variance 1/12 - 1/144 = 11/144
    assert quality["variance"] == pytest.approx(11 / 144)
    assert quality["contrast"] == pytest.approx(math.sqrt(11) / 12)
    # valid region is 1 x 2: -4 at the bright pixel, +1 beside it -> variance 2.5 ** 2
    np.testing.assert_allclose(laplacian(image / 255.0), [[-4.0, 1.0]])
    assert quality["laplacian_variance"] == pytest.approx(6.25)


def test_linear_ramp_has_no_laplacian_response():
    ramp = np.tile(np.arange(0, 255, 15, dtype=np.uint8), (6, 1))
    assert image_quality(ramp)["laplacian_variance"] == 0.0


def test_image_too_small_for_the_laplacian_has_nan_sharpness():
    quality = image_quality(np.array([[0, 255, 0], [255, 0, 255]], dtype=np.uint8))
    assert math.isnan(quality["laplacian_variance"])
    assert quality["variance"] == pytest.approx(0.25)


def test_metric_names_match_the_images_table():
    assert tuple(image_quality(np.zeros((4, 4), dtype=np.uint8))) == QUALITY_COLUMNS


@pytest.mark.parametrize("bad", [np.zeros((4, 4), dtype=np.uint16), np.zeros((4, 4, 3), dtype=np.uint8)])
def test_non_grey_uint8_input_is_refused(bad):
    with pytest.raises(ValueError, match="2-D uint8"):
        image_quality(bad)
