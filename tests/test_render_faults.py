"""Faulty source images: stable rejection reasons, hostile DICOM bytes refused fast, constant images."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pydicom
import pytest

from spinebench.decode import MAX_HEADER_ELEMENTS, DecodeError, decode_to_grey
from spinebench.render import render_rows
from spinebench.render_cache import RenderCache
from spinebench.store import Store
from tests.test_decode import RAMP, SETTINGS, dicom_bytes, raster_bytes, simpleitk_jpeg_lossless_bytes

pytestmark = pytest.mark.faults  # the fault-injection suite (pytest -m faults)

REPO = Path(__file__).resolve().parents[1]
RENDER_SETTINGS = {
    "max_side": 64,
    "mr_percentiles": [1, 99],
    "xray_windowing": "percentile",
    "xray_percentiles": [0.5, 99.5],
}
# What must never be in a rejection reason: an object's address, a temporary file, a Python traceback.
UNSTABLE = re.compile(r"0x[0-9a-fA-F]{6,}|" + re.escape(tempfile.gettempdir()) + "|Traceback")


# --------------------------------------------------------------------------------- stable decode messages


def corrupt_members(tmp_path: Path) -> dict[str, bytes]:
    """Member name -> bytes that every decoder fails on in its own way."""
    lossless = simpleitk_jpeg_lossless_bytes(RAMP, tmp_path)
    start = lossless.index(b"\xff\xd8")  # the JPEG codestream: zero its frame header
    broken_lossless = lossless[: start + 2] + bytes(38) + lossless[start + 40 :]
    unknown_syntax = pydicom.dcmread(io.BytesIO(dicom_bytes(RAMP)))
    unknown_syntax.file_meta.TransferSyntaxUID = "1.2.3.4.5"  # no pydicom decoder: SimpleITK's temp copy
    buffer = io.BytesIO()
    unknown_syntax.save_as(buffer)
    return {
        "truncated.dcm": dicom_bytes(RAMP)[:-100],
        "garbage.png": b"not an image at all" * 10,  # Pillow names the BytesIO it was handed
        "truncated.jpg": raster_bytes(np.full((32, 32), 100, dtype=np.uint8), "JPEG")[:200],
        "broken-jpeg-lossless.dcm": broken_lossless,  # GDCM names its object's address
        "unknown-syntax.dcm": buffer.getvalue(),  # SimpleITK names the temporary file
    }


DECODE_ALL = """
import json, sys
from pathlib import Path
from spinebench.decode import DecodeError, RenderSettings, decode_to_grey
settings = RenderSettings.from_params(json.loads(sys.argv[2]))
messages = {}
for path in sorted(Path(sys.argv[1]).iterdir()):
    try:
        decode_to_grey(path.read_bytes(), path.name, "X-ray", settings)
    except DecodeError as error:
        messages[path.name] = str(error)
print(json.dumps(messages))
"""


def decode_in_a_new_process(folder: Path) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-c", DECODE_ALL, str(folder), json.dumps(RENDER_SETTINGS)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_decode_messages_are_the_same_in_every_process(tmp_path):
    folder = tmp_path / "members"
    folder.mkdir()
    for name, data in corrupt_members(tmp_path).items():
        (folder / name).write_bytes(data)
    first, second = decode_in_a_new_process(folder), decode_in_a_new_process(folder)
    assert sorted(first) == sorted(path.name for path in folder.iterdir())  # every one was rejected
    assert first == second
    for name, message in first.items():
        assert not UNSTABLE.search(message), (name, message)
        assert "\n" not in message
    assert first["garbage.png"].endswith("cannot identify image file <member bytes>")
    assert first["unknown-syntax.dcm"].endswith('Unable to determine ImageIO reader for "<temporary copy>"')
    assert "GDCMImageIO: Failed" in first["broken-jpeg-lossless.dcm"]


def test_rejection_reasons_name_the_member_and_nothing_process_local(tmp_path):
    members = corrupt_members(tmp_path)
    rows = pd.DataFrame(
        {"image_id": [f"x-{i}" for i in range(len(members))], "modality": "X-ray", "member": list(members)}
    )
    reader = SimpleNamespace(read=members.__getitem__)
    _, rejected = render_rows(rows, reader, "mixed", RENDER_SETTINGS)
    _, again = render_rows(rows, reader, "mixed", RENDER_SETTINGS)
    pd.testing.assert_frame_equal(rejected, again)
    for member, reason in zip(rejected["file"], rejected["reason"], strict=True):
        assert reason.startswith(f"cannot decode archive member {member}: ") and not UNSTABLE.search(reason)


# ------------------------------------------------------------------------- hostile DICOM bytes, refused fast


def file_meta_prefix() -> bytes:
    """A real file's preamble, 'DICM' prefix and file meta information, without its data set."""
    data = dicom_bytes(RAMP)
    meta_length = pydicom.dcmread(io.BytesIO(data)).file_meta.FileMetaInformationGroupLength
    return data[: 132 + 12 + meta_length]  # (0002,0000) is 12 bytes, then the group's other elements


def refusal_time(data: bytes, match: str) -> float:
    started = time.perf_counter()
    with pytest.raises(DecodeError, match=match):
        decode_to_grey(data, "train_images/1/2/3.dcm", "MRI", SETTINGS)
    return time.perf_counter() - started


def test_a_member_of_zeros_is_refused_before_parsing():
    """128 MiB of zeros (130 KB zipped, under the member size cap): pydicom took minutes to parse them as
    16 million empty elements; the first tag gives them away."""
    zeros = bytes(128 << 20)
    assert refusal_time(zeros, r"no 'DICM' prefix at byte 128, .* begins with tag \(0000,0000\)") < 0.5
    with_meta = file_meta_prefix() + zeros
    assert refusal_time(with_meta, r"after the 'DICM' prefix .* tag \(0000,0000\) at byte") < 0.5


def test_a_flood_of_header_elements_is_refused():
    """A plausible first tag, then millions of empty elements: pydicom stops at MAX_HEADER_ELEMENTS."""
    flood = b"\x08\x00\x16\x00\x00\x00\x00\x00" * (2 << 20)  # (0008,0016), implicit VR, length 0: 16 MiB
    assert refusal_time(flood, f"more than {MAX_HEADER_ELEMENTS} elements") < 0.5


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file ends at byte 0, before any data set"),
        (dicom_bytes(RAMP)[:200], "the file ends at byte 200, before any data set"),  # inside the meta
        (dicom_bytes(RAMP)[:-100], "truncated pixel data: 302 bytes where 67 x 3 pixels of 1 x 16 bits"),
        (dicom_bytes(RAMP, Rows=0), "the header declares 67 x 0 pixels: no image"),
    ],
)
def test_impossible_files_are_refused_with_what_is_wrong(data, message):
    with pytest.raises(DecodeError, match=re.escape(message)):
        decode_to_grey(data, "a.dcm", "MRI", SETTINGS)


def test_a_header_size_the_codestream_contradicts_is_refused(tmp_path):
    """SimpleITK sizes the image from the JPEG codestream: the header's size must agree."""
    data = simpleitk_jpeg_lossless_bytes(RAMP, tmp_path, Rows=2)
    with pytest.raises(DecodeError, match="SimpleITK decoded 67 x 3 pixels where the header declares 67 x 2"):
        decode_to_grey(data, "a.dcm", "MRI", SETTINGS)


# ------------------------------------------------------------------------------------------ constant images


def constant_members() -> dict[str, bytes]:
    ramp = (np.arange(40 * 50).reshape(40, 50) % 251).astype(np.uint8)
    return {
        "zeros.dcm": dicom_bytes(np.zeros((40, 50), dtype=np.uint16)),  # windowed to black
        "sevens-monochrome1.dcm": dicom_bytes(np.full((8, 8), 7), PhotometricInterpretation="MONOCHROME1"),
        "grey.png": raster_bytes(np.full((30, 20), 200, dtype=np.uint8), "PNG"),
        "ramp.png": raster_bytes(ramp, "PNG"),
    }


def test_constant_images_are_rejected_with_their_level(tmp_path):
    members = constant_members()
    rows = pd.DataFrame(
        {
            "image_id": ["a", "b", "c", "d"],
            "modality": ["MRI", "X-ray", "X-ray", "X-ray"],
            "member": list(members),
        }
    )
    reader = SimpleNamespace(read=members.__getitem__)
    expected = [
        ("a", "zeros.dcm", "constant image (every pixel 0): nothing to see"),
        ("b", "sevens-monochrome1.dcm", "constant image (every pixel 255): nothing to see"),
        ("c", "grey.png", "constant image (every pixel 200): nothing to see"),
    ]
    cache = RenderCache(Store(tmp_path / "store"))
    for _ in range(2):  # decoded, then taken from the store: judged the same
        images, rejected = render_rows(rows, reader, "mixed", RENDER_SETTINGS, cache)
        assert images["image_id"].tolist() == ["d"]
        assert list(rejected[["item", "file", "reason"]].itertuples(index=False, name=None)) == expected
    assert (cache.tally.hits, cache.tally.misses) == (4, 4)
