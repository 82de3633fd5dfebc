"""Decoding at the resolution the render keeps: JPEG 2000 reduce factors, JPEG DCT scaling, and their
agreement with decoding in full."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import openjpeg
import pytest
from PIL import Image
from pydicom.uid import JPEG2000Lossless

from spinebench.decode import DecodeError, RenderSettings, decode_dicom, raster_to_grey
from spinebench.render import render_image
from spinebench.scaled_decode import decode_j2k_reduced, j2k_header, reduce_factor, reduced_side
from tests.test_decode import dicom_bytes

REDUCED = RenderSettings(
    max_side=128, mr_percentiles=(1.0, 99.0), xray_windowing="percentile", xray_percentiles=(0.5, 99.5)
)
FULL = dataclasses.replace(REDUCED, decode_resolution="full")


def film(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth 12-bit film (ramps, a bright block and mild noise), like a radiograph at a coarse scale."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, height)[:, None]
    cols = np.linspace(0.0, 1.0, width)[None, :]
    image = 0.2 + 0.4 * rows + 0.2 * np.sin(6 * cols)
    image[height // 3 : height // 2, width // 4 : width // 2] += 0.3
    image += rng.normal(0.0, 0.005, size=image.shape)
    return np.rint(np.clip(image, 0.0, 1.0) * 4095).astype(np.uint16)


def codestream(pixels: np.ndarray, bits: int = 12) -> bytes:
    return openjpeg.encode(pixels, bits_stored=bits, photometric_interpretation=2, use_mct=False)


def test_header_reads_size_precision_and_levels():
    header = j2k_header(codestream(film(301, 257)))
    assert (header.width, header.height, header.components) == (257, 301, 1)
    assert (header.precision, header.signed) == (12, False)
    assert header.levels >= 2
    assert j2k_header(b"\x00\x00\x00\x0cjP  \r\n\x87\n") is None  # a JP2 box file is not a raw codestream


@pytest.mark.parametrize(
    ("full", "target", "levels", "expected"),
    [
        ((2400, 2949), (417, 512), 5, 2),  # a large VinDr film: 600 x 738 still covers 417 x 512
        ((1500, 1500), (512, 512), 5, 1),  # 750 covers 512, 375 does not
        ((512, 400), (512, 400), 5, 0),  # already the rendered size
        ((4000, 4000), (64, 64), 3, 3),  # never more than the codestream's decomposition levels
    ],
)
def test_reduce_factor_is_the_largest_that_still_covers_the_target(full, target, levels, expected):
    assert reduce_factor(full, target, levels) == expected


@pytest.mark.parametrize(("height", "width"), [(1025, 1027), (1029, 1030), (1024, 1022)])
def test_reduced_decoding_gives_openjpegs_size_for_any_side(height, width):
    """Pillow rounds a reduced side half up where OpenJPEG takes the ceiling: odd sides must still decode."""
    pixels = film(height, width)
    values, full = decode_j2k_reduced(codestream(pixels), target=(100, 100), bits_stored=12)
    assert full == (width, height)
    factor = reduce_factor(full, (100, 100), j2k_header(codestream(pixels)).levels)
    assert factor >= 3
    assert values.shape == (reduced_side(height, factor), reduced_side(width, factor))
    # The lowest resolution level is a low-pass image of the film on its own (12-bit) scale.
    block = 1 << factor
    coarse = pixels[: height // block * block, : width // block * block].reshape(
        height // block, block, width // block, block
    )
    means = coarse.mean(axis=(1, 3))
    inner = np.s_[2:-2, 2:-2]  # the wavelet's borders extend differently from a block mean
    assert np.abs(values[: means.shape[0], : means.shape[1]][inner] - means[inner]).mean() < 40


@pytest.mark.parametrize(
    ("pixels", "bits", "reason"),
    [
        (film(300, 300), 16, "precision differs from BitsStored"),
        (np.stack([film(300, 300)] * 3, axis=-1), 12, "three components"),
    ],
)
def test_codestreams_the_reduced_path_cannot_take_are_left_to_the_full_path(pixels, bits, reason):
    data = openjpeg.encode(pixels, bits_stored=12, photometric_interpretation=2 if pixels.ndim == 2 else 1)
    assert decode_j2k_reduced(data, target=(64, 64), bits_stored=bits) is None, reason


def test_reduced_dicom_renders_like_the_full_decode():
    pixels = film(1030, 900, seed=1)
    data = dicom_bytes(pixels, syntax=JPEG2000Lossless, WindowCenter=2047.5, WindowWidth=4095)
    reduced = decode_dicom(data, REDUCED)
    assert reduced.decoder == "reduced JPEG 2000" and reduced.full_size == (900, 1030)
    assert reduced.values.shape == (reduced_side(1030, 3), reduced_side(900, 3))
    assert decode_dicom(data, FULL).decoder == "pydicom"
    fast, exact = (
        render_image(data, "f.dicom", "X-ray", REDUCED),
        render_image(data, "f.dicom", "X-ray", FULL),
    )
    assert (fast.width, fast.height) == (exact.width, exact.height) == (112, 128)
    difference = np.abs(grey(fast.png) - grey(exact.png))
    # Within a grey level or two (percentile windows of a less noisy image), more only at the block's edges.
    assert difference.mean() < 1.5 and np.percentile(difference, 90) <= 2 and difference.max() <= 40
    assert fast.quality["contrast"] == pytest.approx(exact.quality["contrast"], rel=0.02)


def test_a_truncated_file_is_rejected_as_in_the_full_path():
    data = dicom_bytes(film(1030, 900), syntax=JPEG2000Lossless)
    messages = []
    for settings in (REDUCED, FULL):
        with pytest.warns(UserWarning, match="End of file"), pytest.raises(DecodeError) as error:
            decode_dicom(data[: len(data) * 6 // 10], settings)
        messages.append(str(error.value))
    assert messages[0] == messages[1]


def test_a_damaged_codestream_falls_back_to_the_full_decoder():
    """A codestream the reduced path does not take goes through pydicom, whose error names the decoder."""
    pixels = film(1030, 900)
    data = bytearray(dicom_bytes(pixels, syntax=JPEG2000Lossless))
    siz = data.index(b"\xff\x4f\xff\x51")
    data[siz + 4 + 38] = 0x2F  # Ssiz: 48-bit unsigned samples, which no decoder accepts
    with pytest.raises(DecodeError, match="pydicom cannot decode the pixel data"):
        decode_dicom(bytes(data), REDUCED)


def test_jpeg_is_drafted_at_a_dct_scale_covering_the_render():
    pixels = (film(1200, 1000, seed=2) >> 4).astype(np.uint8)
    for mode in ("L", "RGB"):
        buffer = io.BytesIO()
        Image.fromarray(pixels).convert(mode).save(buffer, format="JPEG", quality=92)
        data = buffer.getvalue()
        drafted = raster_to_grey(data, REDUCED)
        assert drafted.full_size == (1000, 1200)
        assert drafted.grey.shape == (150, 125)  # 1/8 scale: still covers the 107 x 128 render
        assert raster_to_grey(data, FULL).grey.shape == (1200, 1000)
        fast, exact = (
            render_image(data, "f.jpg", "X-ray", REDUCED),
            render_image(data, "f.jpg", "X-ray", FULL),
        )
        assert (fast.width, fast.height) == (exact.width, exact.height)
        assert np.abs(grey(fast.png) - grey(exact.png)).mean() < 1.0


def test_decode_resolution_is_validated():
    params = {
        "max_side": 64,
        "mr_percentiles": [1, 99],
        "xray_windowing": "dicom",
        "xray_percentiles": [1, 99],
    }
    assert RenderSettings.from_params(params).decode_resolution == "reduced"
    with pytest.raises(ValueError, match="decode_resolution must be reduced or full"):
        RenderSettings.from_params({**params, "decode_resolution": "half"})


def grey(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.int16)
