"""Decoding DICOM (uncompressed, JPEG 2000 lossless, SimpleITK fallback), JPEG and PNG to grey levels."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLosslessSV1, generate_uid

from spinebench.decode import (
    DecodeError,
    RenderSettings,
    decode_dicom,
    decode_to_grey,
    dicom_to_grey,
    raster_to_grey,
    window_linear,
    window_percentiles,
)

SETTINGS = RenderSettings.from_params(
    {"max_side": 512, "mr_percentiles": [10, 90], "xray_windowing": "dicom", "xray_percentiles": [10, 90]}
)
PERCENTILE_SETTINGS = RenderSettings.from_params(
    {
        "max_side": 512,
        "mr_percentiles": [10, 90],
        "xray_windowing": "percentile",
        "xray_percentiles": [10, 90],
    }
)

# Values 0..200: the 10th/90th percentiles are exactly 20 and 180 (linear interpolation).
RAMP = np.arange(201, dtype=np.uint16).reshape(3, 67)


def dicom_bytes(pixels: np.ndarray, syntax=ExplicitVRLittleEndian, **tags) -> bytes:
    """A single-frame 16-bit grey DICOM file holding `pixels` (stored values), with extra header `tags`."""
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray, presentation
    dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[pixels.tobytes().hex()])
    dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 12, 11
    dataset.PixelRepresentation = 0
    dataset.PixelData = pixels.astype(np.uint16).tobytes()
    for keyword, value in tags.items():
        setattr(dataset, keyword, value)
    if syntax != ExplicitVRLittleEndian:
        dataset.compress(syntax, pixels.astype(np.uint16))
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def simpleitk_jpeg_lossless_bytes(pixels: np.ndarray, tmp_path, **tags) -> bytes:
    """A JPEG Lossless (process 14) DICOM written by SimpleITK/GDCM: a syntax pydicom cannot decode here."""
    import SimpleITK as sitk

    path = tmp_path / "jpeg-lossless.dcm"
    writer = sitk.ImageFileWriter()
    writer.SetImageIO("GDCMImageIO")
    writer.SetFileName(str(path))
    writer.SetUseCompression(True)
    writer.SetCompressor("JPEG")
    writer.Execute(sitk.GetImageFromArray(pixels.astype(np.uint16)))
    dataset = pydicom.dcmread(path)
    assert dataset.file_meta.TransferSyntaxUID == JPEGLosslessSV1
    for keyword, value in tags.items():
        setattr(dataset, keyword, value)
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def raster_bytes(array: np.ndarray, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=format, **options)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------ windowing arithmetic


def test_percentile_window_maps_percentiles_to_black_and_white():
    grey = window_percentiles(RAMP.astype(np.float64), 10, 90)
    flat = grey.ravel()
    assert flat[20] == 0 and flat[180] == 255  # the percentiles themselves
    assert flat[0] == 0 and flat[200] == 255  # clipped outside
    assert flat[100] == 128  # (100 - 20) / 160 * 255 = 127.5, rounded half to even
    assert flat[60] == 64  # 63.75


def test_linear_window_follows_the_dicom_formula():
    values = np.array([-1.0, 0.0, 100.0, 199.0, 200.0])
    # c = 100, w = 201: ((x - 99.5) / 200 + 0.5) * 255 between -0.5 and 199.5
    assert window_linear(values, 100.0, 201.0).tolist() == [0, 1, 128, 254, 255]
    # w = 1 is a threshold at c - 0.5
    assert window_linear(np.array([9.0, 9.5, 10.0]), 10.0, 1.0).tolist() == [0, 0, 255]


def test_constant_image_windows_to_black():
    assert not window_percentiles(np.full((4, 4), 7.0), 1, 99).any()


def test_settings_reject_reversed_percentiles():
    with pytest.raises(ValueError, match="mr_percentiles"):
        RenderSettings.from_params(
            {
                "max_side": 64,
                "mr_percentiles": [99, 1],
                "xray_windowing": "dicom",
                "xray_percentiles": [1, 99],
            }
        )


# --------------------------------------------------------------------------------------------------- DICOM


def test_mr_dicom_is_windowed_by_mr_percentiles():
    grey = dicom_to_grey(dicom_bytes(RAMP), "MRI", SETTINGS).grey
    assert grey.dtype == np.uint8 and grey.shape == (3, 67)
    np.testing.assert_array_equal(grey, window_percentiles(RAMP.astype(np.float64), 10, 90))


def test_xray_uses_first_value_of_a_multi_valued_window():
    data = dicom_bytes(RAMP, WindowCenter=[100, 3000], WindowWidth=[201, 10])
    pixels = decode_dicom(data)
    assert pixels.window == (100.0, 201.0)
    grey = dicom_to_grey(data, "X-ray", SETTINGS).grey.ravel()
    assert grey[[0, 100, 199, 200]].tolist() == [1, 128, 254, 255]


def test_xray_percentile_mode_ignores_the_dicom_window():
    data = dicom_bytes(RAMP, WindowCenter=100, WindowWidth=201)
    expected = window_percentiles(RAMP.astype(np.float64), 10, 90)
    np.testing.assert_array_equal(dicom_to_grey(data, "X-ray", PERCENTILE_SETTINGS).grey, expected)


def test_xray_without_window_falls_back_to_percentiles():
    expected = window_percentiles(RAMP.astype(np.float64), 10, 90)
    np.testing.assert_array_equal(dicom_to_grey(dicom_bytes(RAMP), "X-ray", SETTINGS).grey, expected)


def test_rescale_slope_and_intercept_are_applied_before_windowing():
    data = dicom_bytes(RAMP, RescaleSlope=2, RescaleIntercept=-100, WindowCenter=100, WindowWidth=201)
    np.testing.assert_array_equal(decode_dicom(data).values, RAMP * 2.0 - 100.0)
    grey = dicom_to_grey(data, "X-ray", SETTINGS).grey.ravel()
    # stored 100 -> 100 (centre), stored 50 -> 0, stored 150 -> 200 (above the window)
    assert grey[[50, 100, 150]].tolist() == [1, 128, 255]


def test_monochrome1_is_inverted_after_windowing():
    normal = dicom_to_grey(dicom_bytes(RAMP, WindowCenter=100, WindowWidth=201), "X-ray", SETTINGS).grey
    inverted = dicom_bytes(RAMP, PhotometricInterpretation="MONOCHROME1", WindowCenter=100, WindowWidth=201)
    np.testing.assert_array_equal(dicom_to_grey(inverted, "X-ray", SETTINGS).grey, 255 - normal)


def test_jpeg2000_lossless_decodes_to_the_same_pixels():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 4096, size=(64, 48)).astype(np.uint16)
    data = dicom_bytes(pixels, syntax=JPEG2000Lossless, WindowCenter=2048, WindowWidth=4096)
    assert pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    decoded = decode_dicom(data)
    assert decoded.decoder == "pydicom"
    np.testing.assert_array_equal(decoded.values, pixels)
    plain = dicom_bytes(pixels, WindowCenter=2048, WindowWidth=4096)
    np.testing.assert_array_equal(
        dicom_to_grey(data, "X-ray", SETTINGS).grey, dicom_to_grey(plain, "X-ray", SETTINGS).grey
    )


def test_simpleitk_decodes_what_pydicom_cannot(tmp_path):
    data = simpleitk_jpeg_lossless_bytes(RAMP, tmp_path)
    with pytest.raises(Exception, match="missing dependencies"):
        _ = pydicom.dcmread(io.BytesIO(data)).pixel_array  # the precondition: no pydicom plugin for it
    decoded = decode_dicom(data)
    assert decoded.decoder == "SimpleITK"
    np.testing.assert_array_equal(decoded.values, RAMP)


def test_simpleitk_fallback_rescales_and_inverts_like_pydicom(tmp_path):
    tags = {"RescaleSlope": 2, "RescaleIntercept": -100, "WindowCenter": 100, "WindowWidth": 201}
    fallback = simpleitk_jpeg_lossless_bytes(RAMP, tmp_path, PhotometricInterpretation="MONOCHROME1", **tags)
    native = dicom_bytes(RAMP, PhotometricInterpretation="MONOCHROME1", **tags)
    decoded = decode_dicom(fallback)
    assert decoded.decoder == "SimpleITK" and decoded.monochrome1
    np.testing.assert_array_equal(decoded.values, RAMP * 2.0 - 100.0)
    np.testing.assert_array_equal(
        dicom_to_grey(fallback, "X-ray", SETTINGS).grey, dicom_to_grey(native, "X-ray", SETTINGS).grey
    )


def test_dicom_without_preamble_or_meta_information_decodes():
    dataset = pydicom.dcmread(io.BytesIO(dicom_bytes(RAMP)))
    del dataset.file_meta
    dataset.preamble = None
    buffer = io.BytesIO()
    dataset.save_as(buffer, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert buffer.getvalue()[128:132] != b"DICM"
    np.testing.assert_array_equal(decode_dicom(buffer.getvalue()).values, RAMP)


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({"RescaleSlope": 0}, "RescaleSlope is 0"),
        ({"Rows": 20000, "Columns": 20000}, "exceed the limit"),  # refused before decompression
        ({"NumberOfFrames": 2}, "multi-frame"),
    ],
)
def test_impossible_headers_raise_decode_error(tags, message):
    with pytest.raises(DecodeError, match=message):
        decode_dicom(dicom_bytes(RAMP, **tags))


def test_truncated_dicom_raises_decode_error():
    data = dicom_bytes(RAMP)
    # Refused before pydicom decodes: the header declares more pixel data than the file holds.
    with pytest.raises(DecodeError, match="truncated pixel data: 302 bytes where 67 x 3 pixels .* need 402"):
        decode_dicom(data[:-100])


@pytest.mark.parametrize("data", [b"", b"not a dicom file at all" * 10, bytes(range(256)) * 4])
def test_garbage_dicom_raises_decode_error(data):
    with pytest.raises(DecodeError):
        decode_to_grey(data, "train_images/1.dicom", "X-ray", SETTINGS)


def test_unknown_modality_is_an_error():
    with pytest.raises(DecodeError, match="modality"):
        dicom_to_grey(dicom_bytes(RAMP), "CT", SETTINGS)


# ---------------------------------------------------------------------------------------------- JPEG, PNG


def test_grey_png_is_kept_exactly():
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(raster_to_grey(raster_bytes(grey, "PNG")).grey, grey)


def test_rgb_png_becomes_luma():
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[...] = (200, 100, 50)  # 0.299 * 200 + 0.587 * 100 + 0.114 * 50 = 124.2
    assert np.unique(raster_to_grey(raster_bytes(rgb, "PNG")).grey).tolist() == [124]


def test_sixteen_bit_png_is_stretched_min_to_max():
    values = np.array([[0, 1000, 4095, 4095]], dtype=np.uint16)
    data = raster_bytes(values, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    assert raster_to_grey(data).grey.tolist() == [[0, 62, 255, 255]]  # 1000 / 4095 * 255 = 62.3


def test_jpeg_grey_and_rgb_decode_to_grey():
    grey = raster_to_grey(raster_bytes(np.full((16, 16), 100, dtype=np.uint8), "JPEG", quality=95)).grey
    assert grey.dtype == np.uint8 and grey.shape == (16, 16)
    assert np.abs(grey.astype(int) - 100).max() <= 1
    rgb = np.zeros((16, 24, 3), dtype=np.uint8)
    rgb[...] = (200, 100, 50)
    grey = decode_to_grey(
        raster_bytes(rgb, "JPEG", quality=95), "AP/0001-F-037Y0.jpg", "X-ray", SETTINGS
    ).grey
    assert grey.shape == (16, 24) and np.abs(grey.astype(int) - 124).max() <= 2


def test_corrupt_jpeg_raises_decode_error():
    data = raster_bytes(np.full((32, 32), 100, dtype=np.uint8), "JPEG")
    with pytest.raises(DecodeError, match="Pillow"):
        raster_to_grey(data[: len(data) // 3])


def test_unsupported_suffix_is_an_error():
    with pytest.raises(DecodeError, match="unsupported image file type"):
        decode_to_grey(b"", "annotations/train.csv", "X-ray", SETTINGS)
