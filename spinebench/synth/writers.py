"""Byte-deterministic file writers for the synthetic archives.

Zip members get a fixed timestamp and fixed permissions, CSVs a fixed line terminator, the xlsx its
volatile timestamps pinned, so the same content always yields the same bytes. Output directories are
staged next to their final place and renamed in at the end, so an interrupted run leaves nothing
half-written behind.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

# The earliest timestamp a zip entry can hold: a constant, so archives do not depend on the clock.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# rw-r--r-- regular file, in the upper 16 bits of a zip entry's external attributes (Unix host).
ZIP_FILE_MODE = 0o100644 << 16
# drwxr-xr-x plus the MS-DOS directory flag.
ZIP_DIRECTORY_MODE = (0o040755 << 16) | 0x10
# Deflate level: level 1 is several times faster than the default on noisy pixel data at a similar size.
ZIP_DEFLATE_LEVEL = 1
# Timestamp written into docProps/core.xml of the xlsx instead of "now".
XLSX_TIMESTAMP = "2024-01-01T00:00:00Z"


class DeterministicZip:
    """A zip file written member by member with fixed metadata (use as a context manager)."""

    def __init__(self, path: Path) -> None:
        self._zip = zipfile.ZipFile(
            path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=ZIP_DEFLATE_LEVEL
        )
        self._names: set[str] = set()

    def add(self, name: str, data: bytes, compress: bool = True) -> None:
        """Add member `name` (a POSIX path inside the archive) holding `data`."""
        if name in self._names:
            raise ValueError(f"duplicate zip member {name!r}")
        self._names.add(name)
        info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
        info.external_attr = ZIP_FILE_MODE
        info.create_system = 3
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        self._zip.writestr(info, data)

    def add_directory(self, name: str) -> None:
        """Add a directory entry (`name` ends with "/"), as archivers write for every folder."""
        if not name.endswith("/") or name in self._names:
            raise ValueError(f"bad or duplicate directory entry {name!r}")
        self._names.add(name)
        info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
        info.external_attr = ZIP_DIRECTORY_MODE
        info.create_system = 3
        self._zip.writestr(info, b"")

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> DeterministicZip:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def csv_bytes(header: Sequence[str] | None, rows: Iterable[Sequence]) -> bytes:
    """CSV text (UTF-8, `\\n` line ends, minimal quoting); None values become empty cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header is not None:
        writer.writerow(header)
    for row in rows:
        writer.writerow(["" if value is None else value for value in row])
    return buffer.getvalue().encode("utf-8")


def format_coordinate(value: float, digits: int = 4) -> str:
    """A pixel coordinate as CSV text with a few decimals (deterministic, no trailing zeros)."""
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def png_bytes(pixels: np.ndarray) -> bytes:
    """A greyscale PNG (8-bit for uint8 input, 16-bit for uint16 input)."""
    if pixels.dtype == np.uint8:
        image = Image.fromarray(pixels, mode="L")
    elif pixels.dtype == np.uint16:
        image = Image.fromarray(pixels.astype(np.uint16), mode="I;16")
    else:
        raise TypeError(f"PNG pixels must be uint8 or uint16, not {pixels.dtype}")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def jpeg_bytes(pixels: np.ndarray, quality: int = 92, rgb: bool = False) -> bytes:
    """A baseline JPEG of uint8 grey pixels: greyscale, or RGB with three identical channels (`rgb`)."""
    if pixels.dtype != np.uint8:
        raise TypeError(f"JPEG pixels must be uint8, not {pixels.dtype}")
    buffer = io.BytesIO()
    image = Image.fromarray(pixels, mode="L")
    if rgb:
        image = image.convert("RGB")
    image.save(buffer, format="JPEG", quality=quality, optimize=False)
    return buffer.getvalue()


def xlsx_bytes(sheet_name: str, rows: Sequence[Sequence]) -> bytes:
    """An xlsx workbook with one sheet holding `rows` (row 1 first), with pinned timestamps.

    openpyxl stamps the save time into docProps/core.xml and into every zip entry, so the workbook is
    re-zipped with fixed entry times and the core-properties dates replaced by XLSX_TIMESTAMP.
    """
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = sheet_name
    for row in rows:
        sheet.append(list(row))
    raw = io.BytesIO()
    workbook.save(raw)
    return _pin_xlsx_timestamps(raw.getvalue())


def _pin_xlsx_timestamps(xlsx: bytes) -> bytes:
    """Rewrite an xlsx (a zip) with fixed entry times and fixed created/modified properties."""
    pinned = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(xlsx)) as source,
        zipfile.ZipFile(pinned, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for entry in source.infolist():
            data = source.read(entry.filename)
            if entry.filename == "docProps/core.xml":
                data = re.sub(
                    rb"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:\2>)",
                    lambda match: match.group(1) + XLSX_TIMESTAMP.encode() + match.group(3),
                    data,
                )
            info = zipfile.ZipInfo(entry.filename, date_time=ZIP_EPOCH)
            info.external_attr = ZIP_FILE_MODE
            info.create_system = 3
            info.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(info, data)
    return pinned.getvalue()
