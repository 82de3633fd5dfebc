"""Decoding raw source images (DICOM, JPEG, PNG) to 8-bit grey display arrays.

Every source image becomes a 2-D `uint8` array of display grey levels (0 black, 255 white):

- DICOM (RSNA MR slices, VinDr radiographs): pixel data decoded by pydicom (pylibjpeg plugins for compressed
  transfer syntaxes such as JPEG 2000 lossless, 1.2.840.10008.1.2.4.90); when pydicom has no working decoder
  for the transfer syntax, SimpleITK (GDCM) decodes it instead. Stored values are mapped to modality values
  with RescaleSlope/RescaleIntercept, windowed to [0, 255] (MR: `mr_percentiles`; X-ray: the file's first
  WindowCenter/WindowWidth under `xray_windowing: dicom`, else `xray_percentiles`) and, for MONOCHROME1
  (where high values are dark), inverted after windowing so that bone is always bright.
- JPEG (BUU) and PNG (CSXA): already display images, decoded by Pillow. 8-bit grey is kept as is, colour
  is converted to luma (ITU-R 601-2, Pillow's "L" mode); 16-bit grey is stretched from its minimum to its
  maximum, because its stored range is unknown (12-bit data in 16-bit containers is common).

Whatever a decoder raises for a bad file is re-raised as `DecodeError` naming the decoder and its message, so
that the render stage can reject exactly that image.
"""

from __future__ import annotations

import copy
import io
import os
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.pixels import get_decoder

# File-name suffixes of each supported format (lower case).
DICOM_SUFFIXES = (".dcm", ".dicom")
RASTER_SUFFIXES = (".jpg", ".jpeg", ".png")

# Modalities of the standardized table (`modality` column).
MRI = "MRI"
XRAY = "X-ray"

# Pillow modes of more than 8 bits per grey value: stretched rather than converted (which would clip them).
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I", "F")

# The largest decoded image accepted (pixels). Bigger files are corrupt or hostile (decompression bombs):
# the largest real source image (VinDr, about 3000 x 3000) is far below it.
MAX_PIXELS = 100_000_000


class DecodeError(ValueError):
    """A source image that cannot be decoded or windowed; the message says why."""


@dataclass(frozen=True)
class RenderSettings:
    """The `render` section of params.yaml, validated."""

    max_side: int
    mr_percentiles: tuple[float, float]
    xray_windowing: str
    xray_percentiles: tuple[float, float]

    @classmethod
    def from_params(cls, params: Mapping) -> RenderSettings:
        """Build from the params mapping, raising ValueError for a missing key or an impossible value."""
        missing = sorted({"max_side", "mr_percentiles", "xray_windowing", "xray_percentiles"} - set(params))
        if missing:
            raise ValueError(f"render settings lack {', '.join(missing)}")
        settings = cls(
            max_side=int(params["max_side"]),
            mr_percentiles=_percentile_pair(params["mr_percentiles"], "mr_percentiles"),
            xray_windowing=str(params["xray_windowing"]),
            xray_percentiles=_percentile_pair(params["xray_percentiles"], "xray_percentiles"),
        )
        if settings.max_side < 1:
            raise ValueError(f"render.max_side must be positive, got {settings.max_side}")
        if settings.xray_windowing not in ("dicom", "percentile"):
            raise ValueError(
                f"render.xray_windowing must be dicom or percentile, got {settings.xray_windowing!r}"
            )
        return settings


def _percentile_pair(values, name: str) -> tuple[float, float]:
    """A (low, high) percentile pair with 0 <= low < high <= 100."""
    low, high = (float(value) for value in values)
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"render.{name} must satisfy 0 <= low < high <= 100, got [{low}, {high}]")
    return low, high


# ---------------------------------------------------------------------------------------------- windowing


def to_uint8(fraction: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] (clipped) to grey levels 0..255, rounding to nearest."""
    return np.rint(np.clip(fraction, 0.0, 1.0) * 255.0).astype(np.uint8)


def window_linear(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM linear VOI window (PS3.3 C.11.2.1.2.1) of `values` to 8-bit grey levels.

    Values at or below c - 0.5 - (w - 1) / 2 become 0, values above c - 0.5 + (w - 1) / 2 become 255, and
    the range between is mapped linearly, exactly as the standard's formula with an output range of 0..255.
    """
    if not width >= 1.0:
        raise DecodeError(f"window width {width} is below 1")
    fraction = (
        (values - (center - 0.5)) / (width - 1.0) + 0.5 if width > 1.0 else (values > center - 0.5) * 1.0
    )
    return to_uint8(fraction)


def window_percentiles(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Window `values` between their `low` and `high` percentiles to 8-bit grey levels.

    A constant image (both percentiles equal) has no contrast to stretch and becomes all black.
    """
    lower, upper = np.percentile(values, [low, high])
    if not upper > lower:
        return np.zeros(values.shape, dtype=np.uint8)
    return to_uint8((values - lower) / (upper - lower))


def stretch_min_max(values: np.ndarray) -> np.ndarray:
    """Stretch `values` from their minimum to their maximum over 0..255 (constant images become black)."""
    return window_percentiles(values, 0.0, 100.0)


# ------------------------------------------------------------------------------------------------- DICOM


@dataclass(frozen=True)
class DicomPixels:
    """Decoded DICOM pixels in modality units plus the header fields that decide how to display them."""

    values: np.ndarray  # 2-D float array: stored values after RescaleSlope/RescaleIntercept
    monochrome1: bool  # high values are dark: invert after windowing
    window: tuple[float, float] | None  # first (WindowCenter, WindowWidth) of the file, if usable
    decoder: str  # which decoder produced the pixels: pydicom or SimpleITK


def _first_value(value) -> float:
    """The first value of a possibly multi-valued DICOM number (WindowCenter can hold several windows)."""
    if isinstance(value, MultiValue | list | tuple):
        if len(value) == 0:
            raise ValueError("empty multi-valued element")
        value = value[0]
    return float(value)


def dicom_window(dataset: pydicom.Dataset) -> tuple[float, float] | None:
    """The file's first (WindowCenter, WindowWidth), or None when absent, empty or unusable (width < 1)."""
    if "WindowCenter" not in dataset or "WindowWidth" not in dataset:
        return None
    try:
        center = _first_value(dataset.WindowCenter)
        width = _first_value(dataset.WindowWidth)
    except (TypeError, ValueError):
        return None
    if not (np.isfinite(center) and np.isfinite(width) and width >= 1.0):
        return None
    return center, width


def _number_or(dataset: pydicom.Dataset, keyword: str, default: float) -> float:
    """A numeric header element as float; `default` when absent or empty; DecodeError when unreadable."""
    value = dataset.get(keyword)
    if value is None or value == "":
        return default
    try:
        number = _first_value(value)
    except (TypeError, ValueError) as error:
        raise DecodeError(f"unreadable {keyword} {value!r}: {error}") from error
    if not np.isfinite(number):
        raise DecodeError(f"{keyword} is {number}")
    return number


def _rescale(dataset: pydicom.Dataset) -> tuple[float, float]:
    """(RescaleSlope, RescaleIntercept) of the file; (1, 0) where absent (MR and many radiographs)."""
    slope = _number_or(dataset, "RescaleSlope", 1.0)
    if slope == 0.0:
        raise DecodeError("RescaleSlope is 0: every pixel would have the same value")
    return slope, _number_or(dataset, "RescaleIntercept", 0.0)


def _check_dimensions(dataset: pydicom.Dataset) -> None:
    """Refuse multi-frame files and sizes beyond MAX_PIXELS before any pixel data is decompressed."""
    frames = int(_number_or(dataset, "NumberOfFrames", 1.0))
    if frames != 1:
        raise DecodeError(f"multi-frame DICOM ({frames} frames) is not a 2-D image")
    rows, columns = int(_number_or(dataset, "Rows", 0.0)), int(_number_or(dataset, "Columns", 0.0))
    if rows * columns > MAX_PIXELS:
        raise DecodeError(f"{columns} x {rows} pixels exceed the limit of {MAX_PIXELS}")


def _read_dicom_header(data: bytes) -> pydicom.Dataset:
    """Parse a DICOM file's header with pydicom (pixel data stays encoded)."""
    try:
        # force=True: some files lack the 128-byte preamble; non-DICOM bytes then fail on the checks below.
        dataset = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as error:  # pydicom raises many types for a mangled header
        raise DecodeError(
            f"pydicom cannot parse the DICOM header: {type(error).__name__}: {error}"
        ) from error
    if "PixelData" not in dataset:
        raise DecodeError("not a DICOM image: no PixelData element")
    meta = getattr(dataset, "file_meta", None)
    if meta is None:
        dataset.file_meta = meta = FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        # A file without meta information: pixel decoding needs a transfer syntax, so state the encoding
        # pydicom detected while reading (only native, uncompressed pixel data can be stored this way).
        meta.TransferSyntaxUID = _native_syntax(dataset)
    return dataset


def _native_syntax(dataset: pydicom.Dataset) -> pydicom.uid.UID:
    """The uncompressed transfer syntax matching the VR and byte order pydicom detected for `dataset`."""
    implicit_vr, little_endian = dataset.original_encoding
    if implicit_vr:
        return pydicom.uid.ImplicitVRLittleEndian
    return pydicom.uid.ExplicitVRLittleEndian if little_endian else pydicom.uid.ExplicitVRBigEndian


def _pixels_with_pydicom(dataset: pydicom.Dataset) -> np.ndarray:
    """Stored pixel values decoded by pydicom (raises whatever its pixel handlers raise)."""
    with warnings.catch_warnings():
        # pydicom warns about (harmless) header quirks of de-identified files, e.g. hex UIDs in VinDr.
        warnings.simplefilter("ignore", UserWarning)
        return dataset.pixel_array


def _pixels_with_simpleitk(dataset: pydicom.Dataset) -> np.ndarray:
    """Stored pixel values decoded by SimpleITK/GDCM, for transfer syntaxes pydicom has no plugin for.

    GDCM does not only decode: it also applies RescaleSlope/Intercept and inverts MONOCHROME1. SimpleITK is
    therefore handed a copy of the file whose display fields are neutral (MONOCHROME2, no rescale), so that
    it returns stored values and both decoders feed the same rescale/window/invert steps. SimpleITK has no
    in-memory reader, so the copy goes through a temporary file.
    """
    import SimpleITK as sitk  # imported lazily: only needed for the rare syntaxes pydicom cannot decode

    neutral = copy.deepcopy(dataset)
    if str(neutral.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1":
        neutral.PhotometricInterpretation = "MONOCHROME2"
    for keyword in ("RescaleSlope", "RescaleIntercept", "RescaleType"):
        if keyword in neutral:
            delattr(neutral, keyword)
    descriptor, path = tempfile.mkstemp(suffix=".dcm")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            neutral.save_as(handle, enforce_file_format=False)
        array = sitk.GetArrayFromImage(sitk.ReadImage(path))
    finally:
        os.unlink(path)
    # A single-frame file comes back as a (1, rows, columns) volume.
    return array[0] if array.ndim == 3 and array.shape[0] == 1 else array


def pydicom_has_decoder(syntax: pydicom.uid.UID) -> bool:
    """Whether pydicom has a usable (installed) pixel data decoder for the transfer syntax."""
    try:
        return get_decoder(syntax).is_available
    except NotImplementedError:  # a syntax pydicom knows no decoder for at all
        return False


def decode_dicom(data: bytes) -> DicomPixels:
    """Decode a DICOM file to modality values plus its display fields (MONOCHROME1, first window).

    pydicom decodes the pixel data when one of its installed plugins handles the transfer syntax; only when
    none does is SimpleITK (GDCM) used. A file pydicom could decode but fails on is corrupt and is not handed
    to SimpleITK: GDCM reads a truncated native pixel data element past its end and returns garbage.
    Raises DecodeError saying which decoder failed and why.
    """
    dataset = _read_dicom_header(data)
    _check_dimensions(dataset)
    slope, intercept = _rescale(dataset)
    syntax = dataset.file_meta.TransferSyntaxUID
    if pydicom_has_decoder(syntax):
        try:
            stored = _pixels_with_pydicom(dataset)
        except Exception as error:  # a truncated or corrupt pixel data element or codestream
            raise DecodeError(
                f"pydicom cannot decode the pixel data: {type(error).__name__}: {error}"
            ) from error
        decoder = "pydicom"
    else:
        try:
            stored = _pixels_with_simpleitk(dataset)
        except Exception as error:
            raise DecodeError(
                f"pydicom has no decoder for transfer syntax {syntax} and SimpleITK cannot decode it: "
                f"{type(error).__name__}: {str(error).strip()}"
            ) from error
        decoder = "SimpleITK"
    values = _as_grey_values(np.asarray(stored), str(dataset.get("PhotometricInterpretation", "")))
    if (slope, intercept) != (1.0, 0.0):
        values = values * slope + intercept
    return DicomPixels(
        values=values,
        monochrome1=str(dataset.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1",
        window=dicom_window(dataset),
        decoder=decoder,
    )


def _as_grey_values(values: np.ndarray, photometric: str) -> np.ndarray:
    """A 2-D float array of grey values; colour DICOMs (RGB after pydicom's YBR conversion) become luma."""
    if values.ndim == 3 and values.shape[-1] == 3:
        values = values.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    if values.ndim != 2:
        raise DecodeError(
            f"pixel array of shape {values.shape} ({photometric or 'no photometric'}) is not 2-D"
        )
    if values.shape[0] * values.shape[1] == 0:
        raise DecodeError(f"empty pixel array of shape {values.shape}")
    values = values.astype(np.float64, copy=False)
    if not np.isfinite(values).all():
        raise DecodeError("pixel values are not all finite")
    return values


def dicom_to_grey(data: bytes, modality: str, settings: RenderSettings) -> np.ndarray:
    """Decode and window a DICOM file to 8-bit display grey levels (the rules: see the module docstring)."""
    pixels = decode_dicom(data)
    if modality == MRI:
        grey = window_percentiles(pixels.values, *settings.mr_percentiles)
    elif modality == XRAY:
        if settings.xray_windowing == "dicom" and pixels.window is not None:
            grey = window_linear(pixels.values, *pixels.window)
        else:
            grey = window_percentiles(pixels.values, *settings.xray_percentiles)
    else:
        raise DecodeError(f"unknown modality {modality!r} (expected {MRI} or {XRAY})")
    return 255 - grey if pixels.monochrome1 else grey


# ----------------------------------------------------------------------------------------- JPEG and PNG


def raster_to_grey(data: bytes) -> np.ndarray:
    """Decode a JPEG or PNG to 8-bit grey levels (colour to luma, 16-bit grey stretched min..max)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise DecodeError(f"{image.width} x {image.height} pixels exceed the limit of {MAX_PIXELS}")
            image.load()
            if image.mode in _WIDE_MODES:
                return stretch_min_max(np.asarray(image, dtype=np.float64))
            # 8-bit grey, palette and colour modes: Pillow's luma conversion (raises for an odd mode).
            return np.asarray(image.convert("L"))
    except DecodeError:
        raise
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError... for a bad file
        raise DecodeError(f"Pillow cannot decode the image: {type(error).__name__}: {error}") from error


# ------------------------------------------------------------------------------------------------ dispatch


def image_format(member: str) -> str:
    """`dicom` or `raster` from the member's file suffix; DecodeError for any other suffix."""
    suffix = PurePosixPath(member).suffix.lower()
    if suffix in DICOM_SUFFIXES:
        return "dicom"
    if suffix in RASTER_SUFFIXES:
        return "raster"
    raise DecodeError(f"unsupported image file type {suffix or '(no suffix)'!r}")


def decode_to_grey(data: bytes, member: str, modality: str, settings: RenderSettings) -> np.ndarray:
    """Decode one source image (format from the member's suffix) to a 2-D uint8 display array."""
    if image_format(member) == "dicom":
        return dicom_to_grey(data, modality, settings)
    return raster_to_grey(data)
