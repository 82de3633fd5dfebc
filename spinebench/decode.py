"""Decoding raw source images (DICOM, JPEG, PNG) to 8-bit grey display arrays.

Every source image becomes a 2-D `uint8` array of display grey levels (0 black, 255 white):

- DICOM (RSNA MR slices, VinDr radiographs): pixel data decoded by pydicom (pylibjpeg plugins for compressed
  transfer syntaxes such as JPEG 2000 lossless, 1.2.840.10008.1.2.4.90); when pydicom has no working decoder
  for the transfer syntax, SimpleITK (GDCM) decodes it instead. Stored values are mapped to modality values
  with RescaleSlope/RescaleIntercept, resampled to the rendered size (LANCZOS, so that a window's
  percentiles are those of the image kept), windowed to [0, 255] (MR: `mr_percentiles`; X-ray: the file's
  first WindowCenter/WindowWidth under `xray_windowing: dicom`, else `xray_percentiles`) and, for
  MONOCHROME1 (where high values are dark), inverted after windowing so that bone is always bright.
- JPEG (BUU) and PNG (CSXA): already display images, decoded by Pillow. 8-bit grey is kept as is, colour
  is converted to luma (ITU-R 601-2, Pillow's "L" mode); 16-bit grey is stretched from its minimum to its
  maximum, because its stored range is unknown (12-bit data in 16-bit containers is common).

Under `decode_resolution: reduced` (the default) a JPEG 2000 DICOM or a JPEG larger than the rendered size
is decoded at a reduced resolution that still covers the rendered size (`spinebench.scaled_decode`). Every
decoder returns its grey image together with the stored image's size, which the renderer fits to
`max_side` (a DICOM comes back at that size already, a JPEG or PNG possibly larger).

Whatever a decoder raises for a bad file is re-raised as `DecodeError` naming the decoder and its message, so
that the render stage can reject exactly that image. The message is made stable first (`stable_message`):
libraries name the in-memory file by its object address and SimpleITK its temporary copy by path, which
would make the rejected tables differ from run to run.

Bytes that cannot open a DICOM image's data set are refused before pydicom parses them
(`check_data_set_start`), and pydicom stops at MAX_HEADER_ELEMENTS elements: told to read files without the
'DICM' prefix, it otherwise parses anything, e.g. 128 MiB of zeros as 16 million empty elements (minutes).
"""

from __future__ import annotations

import copy
import io
import os
import re
import struct
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.filereader import read_partial
from pydicom.multival import MultiValue
from pydicom.pixels import get_decoder
from pydicom.uid import JPEG2000, JPEG2000Lossless
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from spinebench.scaled_decode import decode_j2k_reduced, draft_jpeg

# File-name suffixes of each supported format (lower case).
DICOM_SUFFIXES = (".dcm", ".dicom")
RASTER_SUFFIXES = (".jpg", ".jpeg", ".png")

# Modalities of the standardized table (`modality` column).
MRI = "MRI"
XRAY = "X-ray"

# Transfer syntaxes whose pixel data is a JPEG 2000 codestream (lossless and lossy).
JPEG2000_SYNTAXES = (JPEG2000Lossless, JPEG2000)

# Pillow modes of more than 8 bits per grey value: stretched rather than converted (which would clip them).
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I", "F")

# The largest decoded image accepted (pixels). Bigger files are corrupt or hostile (decompression bombs):
# the largest real source image (VinDr, about 3000 x 3000) is far below it.
MAX_PIXELS = 100_000_000

# The most top-level elements a DICOM header may have. Real headers have a few hundred; a flood of tiny
# elements (a hostile or garbage file) would otherwise take pydicom minutes to parse.
MAX_HEADER_ELEMENTS = 10_000

# The 'DICM' prefix follows a 128-byte preamble (PS3.10 7.1).
_PREFIX_OFFSET = 128
_PREFIX = b"DICM"
# File Meta Information group (PS3.10 7.1), always explicit VR little endian.
_META_GROUP = 0x0002
# The groups an image's data set can begin with: 0008 (SOP Common, whose SOP Class UID is mandatory) or, in
# a file that lacks it, a later group up to Pixel Data (7FE0). A big endian file's first groups, read as
# little endian (0x0800, 0x1000...), fall in the range too.
_FIRST_GROUPS = (0x0008, 0x7FE0)

# Placeholders for what a library's message names but is no property of the file's bytes.
MEMBER_PLACEHOLDER = "<member bytes>"
TEMPORARY_PLACEHOLDER = "<temporary copy>"


class DecodeError(ValueError):
    """A source image that cannot be decoded or windowed; the message says why."""


# `<_io.BytesIO object at 0x7f...>`: how Pillow and pydicom name the in-memory file they were handed.
_OBJECT_REPR = re.compile(r"<([\w.]+) object at 0x[0-9a-fA-F]+>")
# `GDCMImageIO(0x562e...)`: ITK names the object that failed by its address.
_ADDRESS_SUFFIX = re.compile(r"\(0x[0-9a-fA-F]+\)")
# `/tmp/SimpleITK-build/.../itkGDCMImageIO.cxx:312:`: where in the library's C++ sources it failed.
_SOURCE_LOCATION = re.compile(r"\S+\.(?:c|cc|cpp|cxx|h|hpp|hxx|txx):\d+:")
# Files tempfile creates: `/tmp/tmpab12_x.dcm`.
_TEMPORARY_FILE = re.compile(re.escape(tempfile.gettempdir()) + r"/tmp[\w-]+(?:\.\w+)?")


def stable_message(message: str, temporary_path: str | None = None) -> str:
    """A library's error message without what changes from run to run, on one line.

    Object reprs (`<_io.BytesIO object at 0x...>`) become MEMBER_PLACEHOLDER, a temporary copy's path
    TEMPORARY_PLACEHOLDER; object addresses, C++ source locations and embedded tracebacks are dropped.
    The member itself is not named here: a decode outcome is stored by content (`spinebench.render_cache`),
    so one message must fit every member with the same bytes; the render stage names the member around it.
    """
    # pydicom appends a formatted traceback (naming its install paths) to some messages: drop it.
    message = message.split("Traceback (most recent call last):", 1)[0]
    if temporary_path:
        message = message.replace(temporary_path, TEMPORARY_PLACEHOLDER)
    message = _TEMPORARY_FILE.sub(TEMPORARY_PLACEHOLDER, message)
    message = _OBJECT_REPR.sub(
        lambda match: MEMBER_PLACEHOLDER if match.group(1).endswith("BytesIO") else f"<{match.group(1)}>",
        message,
    )
    message = _SOURCE_LOCATION.sub("", _ADDRESS_SUFFIX.sub("", message))
    return " ".join(message.split())


def library_error(what: str, error: BaseException, temporary_path: str | None = None) -> DecodeError:
    """DecodeError `what: ErrorType: message` for an error a decoding library raised, made stable."""
    return DecodeError(f"{what}: {type(error).__name__}: {stable_message(str(error), temporary_path)}")


@dataclass(frozen=True)
class RenderSettings:
    """The `render` section of params.yaml, validated."""

    max_side: int
    mr_percentiles: tuple[float, float]
    xray_windowing: str
    xray_percentiles: tuple[float, float]
    decode_resolution: str = "reduced"

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
            decode_resolution=str(params.get("decode_resolution", "reduced")),
        )
        if settings.max_side < 1:
            raise ValueError(f"render.max_side must be positive, got {settings.max_side}")
        if settings.xray_windowing not in ("dicom", "percentile"):
            raise ValueError(
                f"render.xray_windowing must be dicom or percentile, got {settings.xray_windowing!r}"
            )
        if settings.decode_resolution not in ("reduced", "full"):
            raise ValueError(
                f"render.decode_resolution must be reduced or full, got {settings.decode_resolution!r}"
            )
        return settings

    def decode_target(self, width: int, height: int) -> tuple[int, int] | None:
        """The smallest size a decoder may reduce a (width, height) image to; None: decode in full."""
        if self.decode_resolution == "full":
            return None
        return fitted_size(width, height, self.max_side)


@dataclass(frozen=True)
class GreyImage:
    """Display grey levels of a source image, possibly decoded at a reduced resolution."""

    grey: np.ndarray  # 2-D uint8, at least the size the renderer fits the stored image to
    full_size: tuple[int, int]  # (width, height) of the stored image


def fitted_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled so that the longest side is at most `max_side`; never enlarged."""
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def _percentile_pair(values, name: str) -> tuple[float, float]:
    """A (low, high) percentile pair with 0 <= low < high <= 100."""
    low, high = (float(value) for value in values)
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"render.{name} must satisfy 0 <= low < high <= 100, got [{low}, {high}]")
    return low, high


# ---------------------------------------------------------------------------------------------- windowing


def to_uint8(fraction: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] (clipped) to grey levels 0..255, rounding to nearest.

    Works in place on `fraction` (a temporary of the caller), so that a 3,000-pixel film holds one float
    array here rather than three.
    """
    np.clip(fraction, 0.0, 1.0, out=fraction)
    fraction *= 255.0
    np.rint(fraction, out=fraction)
    return fraction.astype(np.uint8)


def window_linear(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM linear VOI window (PS3.3 C.11.2.1.2.1) of `values` to 8-bit grey levels.

    Values at or below c - 0.5 - (w - 1) / 2 become 0, values above c - 0.5 + (w - 1) / 2 become 255, and
    the range between is mapped linearly, exactly as the standard's formula with an output range of 0..255.
    """
    if not width >= 1.0:
        raise DecodeError(f"window width {width} is below 1")
    if width == 1.0:
        return to_uint8((values > center - 0.5) * 1.0)
    fraction = np.subtract(values, center - 0.5, dtype=np.float64)
    fraction /= width - 1.0
    fraction += 0.5
    return to_uint8(fraction)


def window_percentiles(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Window `values` between their `low` and `high` percentiles to 8-bit grey levels.

    A constant image (both percentiles equal) has no contrast to stretch and becomes all black.
    """
    lower, upper = np.percentile(values, [low, high])
    if not upper > lower:
        return np.zeros(values.shape, dtype=np.uint8)
    fraction = np.subtract(values, lower, dtype=np.float64)
    fraction /= upper - lower
    return to_uint8(fraction)


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
    decoder: str  # which decoder produced the pixels: pydicom, SimpleITK or reduced JPEG 2000
    full_size: tuple[int, int]  # (Columns, Rows): `values` is smaller when decoded at a reduced resolution


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


def _check_dimensions(dataset: pydicom.Dataset) -> tuple[int, int]:
    """(Columns, Rows) of the file, after refusing multi-frame files, sizes beyond MAX_PIXELS and
    uncompressed pixel data shorter than the size declares, before any pixel data is decoded."""
    frames = int(_number_or(dataset, "NumberOfFrames", 1.0))
    if frames != 1:
        raise DecodeError(f"multi-frame DICOM ({frames} frames) is not a 2-D image")
    rows, columns = int(_number_or(dataset, "Rows", 0.0)), int(_number_or(dataset, "Columns", 0.0))
    if rows < 1 or columns < 1:
        raise DecodeError(f"the header declares {columns} x {rows} pixels: no image")
    if rows * columns > MAX_PIXELS:
        raise DecodeError(f"{columns} x {rows} pixels exceed the limit of {MAX_PIXELS}")
    if _is_native(dataset.file_meta.TransferSyntaxUID):
        _check_native_length(dataset, columns, rows)
    return columns, rows


def _is_native(syntax: pydicom.uid.UID) -> bool:
    """Whether a transfer syntax stores pixel data uncompressed (False for one pydicom does not know)."""
    try:
        return not syntax.is_encapsulated
    except ValueError:  # not a transfer syntax pydicom knows: a private one is left to SimpleITK
        return False


def _check_native_length(dataset: pydicom.Dataset, columns: int, rows: int) -> None:
    """Refuse uncompressed pixel data shorter than Columns x Rows x SamplesPerPixel x BitsAllocated declare
    (a truncated file, or a header whose size is wrong). Longer is allowed: odd lengths are padded."""
    samples = int(_number_or(dataset, "SamplesPerPixel", 1.0))
    bits = int(_number_or(dataset, "BitsAllocated", 0.0))
    if str(dataset.get("PhotometricInterpretation", "")).strip().upper() == "YBR_FULL_422":
        samples = 2  # two luma samples share one pair of chroma samples: 2 values per pixel, not 3
    declared = (columns * rows * samples * bits + 7) // 8
    stored = len(dataset.PixelData)
    if stored < declared:
        raise DecodeError(
            f"truncated pixel data: {stored} bytes where {columns} x {rows} pixels of {samples} x {bits} "
            f"bits need {declared}"
        )


def _data_set_offset(data: bytes) -> int:
    """Byte offset of a DICOM file's first data set element: past the preamble and 'DICM' prefix when
    present, and past the File Meta Information elements (group 0002) when present."""
    offset = _PREFIX_OFFSET + len(_PREFIX) if data[_PREFIX_OFFSET : _PREFIX_OFFSET + 4] == _PREFIX else 0
    while offset + 8 <= len(data) and struct.unpack_from("<H", data, offset)[0] == _META_GROUP:
        vr = data[offset + 4 : offset + 6]
        if vr.decode("latin-1") in EXPLICIT_VR_LENGTH_32:  # 2 reserved bytes, then a 4-byte length
            if offset + 12 > len(data):
                return len(data)
            offset += 12 + struct.unpack_from("<I", data, offset + 8)[0]
        elif vr.isalpha() and vr.isupper():  # an explicit VR with a 2-byte length
            offset += 8 + struct.unpack_from("<H", data, offset + 6)[0]
        else:  # implicit VR, as some writers store the meta information against the standard
            offset += 8 + struct.unpack_from("<I", data, offset + 4)[0]
    return offset


def check_data_set_start(data: bytes) -> None:
    """Refuse, in microseconds, bytes whose data set does not begin like a DICOM image's.

    The header is parsed with force=True (some files lack the preamble), under which pydicom reads any
    bytes as data elements; zeros, for one, are elements (0000,0000) of length 0, eight bytes each.
    """
    offset = _data_set_offset(data)
    if offset + 8 > len(data):  # not even one element header (tag and length) left
        raise DecodeError(f"not a DICOM image: the file ends at byte {len(data)}, before any data set")
    group, element = struct.unpack_from("<HH", data, offset)
    if not _FIRST_GROUPS[0] <= group <= _FIRST_GROUPS[1]:
        tag = f"tag ({group:04X},{element:04X}) at byte {offset}"
        if data[_PREFIX_OFFSET : _PREFIX_OFFSET + 4] == _PREFIX:
            where = f"the data set after the 'DICM' prefix and file meta information begins with {tag}"
        else:
            where = f"no 'DICM' prefix at byte {_PREFIX_OFFSET}, and the data set begins with {tag}"
        raise DecodeError(f"not a DICOM image: {where}, which no image header begins with")


class _ElementBudget:
    """pydicom `stop_when` callback that refuses a header of more than MAX_HEADER_ELEMENTS elements.

    Raising (rather than returning True, which would only stop the reading) makes the file a DecodeError.
    """

    def __init__(self) -> None:
        self.elements = 0

    def __call__(self, tag, vr, length) -> bool:
        self.elements += 1
        if self.elements > MAX_HEADER_ELEMENTS:
            raise DecodeError(
                f"not a DICOM image: its header has more than {MAX_HEADER_ELEMENTS} elements "
                f"(the last read: {tag})"
            )
        return False


def _read_dicom_header(data: bytes) -> pydicom.Dataset:
    """Parse a DICOM file's header with pydicom (pixel data stays encoded), after the cheap checks."""
    check_data_set_start(data)
    try:
        # force=True: some files lack the 128-byte preamble. read_partial is dcmread's reader, with a
        # stop_when callback that bounds the number of elements.
        dataset = read_partial(io.BytesIO(data), stop_when=_ElementBudget(), force=True)
    except DecodeError:
        raise
    except Exception as error:  # pydicom raises many types for a mangled header
        raise library_error("pydicom cannot parse the DICOM header", error) from error
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
    in-memory reader, so the copy goes through a temporary file. Raises DecodeError when it cannot decode.
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
    except Exception as error:  # its message names the temporary copy: replaced by a placeholder
        syntax = dataset.file_meta.TransferSyntaxUID
        raise library_error(
            f"pydicom has no decoder for transfer syntax {syntax} and SimpleITK cannot decode it", error, path
        ) from error
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


def decode_dicom(data: bytes, settings: RenderSettings | None = None) -> DicomPixels:
    """Decode a DICOM file to modality values plus its display fields (MONOCHROME1, first window).

    With `settings` that allow it, JPEG 2000 pixel data is decoded at the reduced resolution the render
    needs (`spinebench.scaled_decode`). Otherwise pydicom decodes the pixel data when one of its installed
    plugins handles the transfer syntax; only when none does is SimpleITK (GDCM) used. A file pydicom could
    decode but fails on is corrupt and is not handed to SimpleITK: GDCM reads a truncated native pixel data
    element past its end and returns garbage. Raises DecodeError saying which decoder failed and why.
    """
    dataset = _read_dicom_header(data)
    full_size = _check_dimensions(dataset)
    slope, intercept = _rescale(dataset)
    target = settings.decode_target(*full_size) if settings is not None else None
    reduced = _reduced_pixels(dataset, target, full_size) if target is not None else None
    if reduced is not None:
        stored, decoder = reduced, "reduced JPEG 2000"
    else:
        stored, decoder = _full_pixels(dataset)
    values = _as_grey_values(np.asarray(stored), str(dataset.get("PhotometricInterpretation", "")))
    if reduced is None and values.shape != (full_size[1], full_size[0]):
        # SimpleITK sizes the image from the codestream, not the header; the render fits the header's size.
        raise DecodeError(
            f"{decoder} decoded {values.shape[1]} x {values.shape[0]} pixels where the header declares "
            f"{full_size[0]} x {full_size[1]}"
        )
    if (slope, intercept) != (1.0, 0.0):
        values = values * slope + intercept
    return DicomPixels(
        values=values,
        monochrome1=str(dataset.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1",
        window=dicom_window(dataset),
        decoder=decoder,
        full_size=full_size,
    )


def _full_pixels(dataset: pydicom.Dataset) -> tuple[np.ndarray, str]:
    """(stored values at full resolution, the decoder's name): pydicom, else SimpleITK."""
    syntax = dataset.file_meta.TransferSyntaxUID
    if pydicom_has_decoder(syntax):
        try:
            return _pixels_with_pydicom(dataset), "pydicom"
        except Exception as error:  # a truncated or corrupt pixel data element or codestream
            raise library_error("pydicom cannot decode the pixel data", error) from error
    return _pixels_with_simpleitk(dataset), "SimpleITK"


def _reduced_pixels(
    dataset: pydicom.Dataset, target: tuple[int, int], full_size: tuple[int, int]
) -> np.ndarray | None:
    """Stored values of a single-frame, unsigned, grey JPEG 2000 file decoded at a reduced resolution
    covering `target`; None when the file does not qualify (the full path then decodes it)."""
    if dataset.file_meta.TransferSyntaxUID not in JPEG2000_SYNTAXES:
        return None
    if int(_number_or(dataset, "SamplesPerPixel", 1.0)) != 1:
        return None
    if int(_number_or(dataset, "PixelRepresentation", 0.0)) != 0:
        return None
    try:
        codestream = next(generate_frames(dataset.PixelData, number_of_frames=1))
    except Exception:  # a malformed encapsulation: the full path reports it
        return None
    bits_stored = int(_number_or(dataset, "BitsStored", 16.0))
    decoded = decode_j2k_reduced(codestream, target, bits_stored)
    if decoded is None or decoded[1] != full_size:
        return None
    return decoded[0]


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


def dicom_to_grey(data: bytes, modality: str, settings: RenderSettings) -> GreyImage:
    """Decode, resample and window a DICOM file to 8-bit display grey levels (rules: the module docstring).

    The modality values are resampled to the rendered size before windowing, so that the window's
    percentiles are those of the image the render keeps, whether it was decoded in full or reduced.
    """
    pixels = decode_dicom(data, settings)
    values = fit_values(pixels.values, fitted_size(*pixels.full_size, settings.max_side))
    if modality == MRI:
        grey = window_percentiles(values, *settings.mr_percentiles)
    elif modality == XRAY:
        if settings.xray_windowing == "dicom" and pixels.window is not None:
            grey = window_linear(values, *pixels.window)
        else:
            grey = window_percentiles(values, *settings.xray_percentiles)
    else:
        raise DecodeError(f"unknown modality {modality!r} (expected {MRI} or {XRAY})")
    return GreyImage(255 - grey if pixels.monochrome1 else grey, pixels.full_size)


def fit_values(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Modality values resampled with LANCZOS to (width, height) `size` (unchanged if already that size).

    Resampled as 32-bit floats (Pillow's "F" mode), which hold 16-bit stored values exactly.
    """
    if size == (values.shape[1], values.shape[0]):
        return values
    image = Image.fromarray(values.astype(np.float32), mode="F")
    return np.asarray(image.resize(size, Image.Resampling.LANCZOS), dtype=np.float64)


# ----------------------------------------------------------------------------------------- JPEG and PNG


def raster_to_grey(data: bytes, settings: RenderSettings | None = None) -> GreyImage:
    """Decode a JPEG or PNG to 8-bit grey levels (colour to luma, 16-bit grey stretched min..max).

    With `settings` that allow it, a JPEG larger than the rendered size is decoded at a DCT scale covering it.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise DecodeError(f"{image.width} x {image.height} pixels exceed the limit of {MAX_PIXELS}")
            full_size = image.size
            target = settings.decode_target(*full_size) if settings is not None else None
            if target is not None and target != full_size:
                draft_jpeg(image, target)
            image.load()
            if image.mode in _WIDE_MODES:
                return GreyImage(stretch_min_max(np.asarray(image, dtype=np.float64)), full_size)
            # 8-bit grey, palette and colour modes: Pillow's luma conversion (raises for an odd mode).
            return GreyImage(np.asarray(image.convert("L")), full_size)
    except DecodeError:
        raise
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError... for a bad file
        raise library_error("Pillow cannot decode the image", error) from error


# ------------------------------------------------------------------------------------------------ dispatch


def image_format(member: str) -> str:
    """`dicom` or `raster` from the member's file suffix; DecodeError for any other suffix."""
    suffix = PurePosixPath(member).suffix.lower()
    if suffix in DICOM_SUFFIXES:
        return "dicom"
    if suffix in RASTER_SUFFIXES:
        return "raster"
    raise DecodeError(f"unsupported image file type {suffix or '(no suffix)'!r}")


def decode_to_grey(data: bytes, member: str, modality: str, settings: RenderSettings) -> GreyImage:
    """Decode one source image (format from the member's suffix) to 2-D uint8 display grey levels.

    Raises DecodeError only: whatever else a decoding step raises for a file no check above foresaw
    becomes one too, so that a single odd file is a rejected row rather than a failed render job.
    """
    try:
        if image_format(member) == "dicom":
            return dicom_to_grey(data, modality, settings)
        return raster_to_grey(data, settings)
    except DecodeError:
        raise
    except (ArithmeticError, LookupError, ValueError, TypeError, OSError) as error:
        raise library_error("the file breaks an unchecked assumption of the decoder", error) from error
