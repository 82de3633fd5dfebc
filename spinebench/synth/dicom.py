"""DICOM Part 10 files for the synthetic MR (RSNA) and radiograph (VinDr-SpineXR) sources.

The headers carry what the real files carry (SOURCES.md 1.4 and 2.4) and nothing that varies between
runs: every UID is derived from the seed, no dates or times are written.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from pydicom import config as pydicom_config
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_IMAGE_STORAGE_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
# An implementation UID of our own under the 2.25 root, fixed so that file meta never varies.
IMPLEMENTATION_CLASS_UID = "2.25.208411653462316497612218405306423549831"
IMPLEMENTATION_VERSION_NAME = "SPINEBENCH_SYN"


@contextmanager
def lenient_values() -> Iterator[None]:
    """Accept values pydicom would warn about while building and writing a dataset (VinDr's hex-hash
    UIDs are invalid UI values, on purpose: the real files have them)."""
    settings = pydicom_config.settings
    previous = settings.reading_validation_mode, settings.writing_validation_mode
    settings.reading_validation_mode = settings.writing_validation_mode = pydicom_config.IGNORE
    try:
        yield
    finally:
        settings.reading_validation_mode, settings.writing_validation_mode = previous


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def _set_pixels(dataset: Dataset, pixels: np.ndarray, bits_stored: int, photometric: str) -> None:
    """Single-frame unsigned greyscale pixel module."""
    if pixels.dtype != np.uint16 or pixels.ndim != 2:
        raise ValueError("pixels must be a 2D uint16 array")
    if int(pixels.max(initial=0)) >= 1 << bits_stored:
        raise ValueError(f"pixel values exceed BitsStored={bits_stored}")
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = photometric
    dataset.Rows, dataset.Columns = (int(n) for n in pixels.shape)
    dataset.BitsAllocated = 16
    dataset.BitsStored = bits_stored
    dataset.HighBit = bits_stored - 1
    dataset.PixelRepresentation = 0
    dataset.PixelData = np.ascontiguousarray(pixels).astype("<u2").tobytes()


def _to_bytes(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _ds_number(value: float) -> str:
    """A DS (decimal string) value: at most 16 characters, no exponent, deterministic."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@dataclass(frozen=True)
class MrSlice:
    """Header values of one MR slice (geometry in the patient LPS frame, mm)."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    frame_of_reference_uid: str
    patient_id: str
    instance_number: int
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float, float, float]
    pixel_spacing: float
    slice_thickness: float
    spacing_between_slices: float


def mr_slice_bytes(pixels: np.ndarray, header: MrSlice) -> bytes:
    """An uncompressed MR Image Storage file (uint16, MONOCHROME2, BitsStored 12)."""
    with lenient_values():
        return _mr_slice_bytes(pixels, header)


def _mr_slice_bytes(pixels: np.ndarray, header: MrSlice) -> bytes:
    dataset = Dataset()
    dataset.file_meta = _file_meta(MR_IMAGE_STORAGE, header.sop_instance_uid)
    dataset.SOPClassUID = MR_IMAGE_STORAGE
    dataset.SOPInstanceUID = header.sop_instance_uid
    dataset.Modality = "MR"
    dataset.PatientID = header.patient_id
    dataset.StudyInstanceUID = header.study_uid
    dataset.SeriesInstanceUID = header.series_uid
    dataset.FrameOfReferenceUID = header.frame_of_reference_uid
    dataset.InstanceNumber = header.instance_number
    dataset.ImagePositionPatient = [_ds_number(v) for v in header.position]
    dataset.ImageOrientationPatient = [_ds_number(v) for v in header.orientation]
    dataset.PixelSpacing = [_ds_number(header.pixel_spacing)] * 2
    dataset.SliceThickness = _ds_number(header.slice_thickness)
    dataset.SpacingBetweenSlices = _ds_number(header.spacing_between_slices)
    _set_pixels(dataset, pixels, 12, "MONOCHROME2")
    return _to_bytes(dataset)


@dataclass(frozen=True)
class XrayImage:
    """Header values of one VinDr-SpineXR-like radiograph (ids are the 32-hex strings of the CSV)."""

    image_id: str
    study_id: str
    series_id: str
    sop_class: str
    photometric: str
    pixel_spacing: float
    window_center: float
    window_width: float
    patient_sex: str
    # Real VinDr files carry "0" for both, and PixelAspectRatio on one film only.
    patient_size: float = 0.0
    patient_weight: float = 0.0
    pixel_aspect_ratio: bool = False


def xray_bytes(pixels: np.ndarray, header: XrayImage, jpeg2000: bool) -> bytes:
    """A radiograph with VinDr's sparse header: no Modality, BitsStored 12, optional JPEG 2000 lossless.

    `pixels` are the stored values (already inverted for MONOCHROME1).
    """
    with lenient_values():
        return _xray_bytes(pixels, header, jpeg2000)


def _xray_bytes(pixels: np.ndarray, header: XrayImage, jpeg2000: bool) -> bytes:
    dataset = Dataset()
    dataset.file_meta = _file_meta(header.sop_class, header.image_id)
    dataset.SOPClassUID = header.sop_class
    dataset.SOPInstanceUID = header.image_id
    dataset.PatientSex = header.patient_sex
    dataset.PatientSize = _ds_number(header.patient_size)
    dataset.PatientWeight = _ds_number(header.patient_weight)
    dataset.StudyInstanceUID = header.study_id
    dataset.SeriesInstanceUID = header.series_id
    dataset.PixelSpacing = [_ds_number(header.pixel_spacing)] * 2
    if header.pixel_aspect_ratio:
        dataset.PixelAspectRatio = [1, 1]
    dataset.WindowCenter = _ds_number(header.window_center)
    dataset.WindowWidth = _ds_number(header.window_width)
    dataset.RescaleIntercept = 0
    dataset.RescaleSlope = 1
    dataset.LossyImageCompression = "00"
    _set_pixels(dataset, pixels, 12, header.photometric)
    if jpeg2000:
        # Keep the SOP Instance UID: it is the image id (compress() would mint a random one).
        dataset.compress(JPEG2000Lossless, pixels, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    return _to_bytes(dataset)
