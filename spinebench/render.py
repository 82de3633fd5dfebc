"""Rendering standardized images to 2-D RGB PNGs with quality metrics (one shard at a time).

For every standardized row the archive member is read, decoded and windowed to 8-bit grey
(`spinebench.decode`; large films at a reduced resolution, see `spinebench.scaled_decode`), resampled so
that the stored image's longest side becomes at most `render.max_side` (Pillow LANCZOS, never enlarged),
scored (`spinebench.quality`, on the downscaled grey levels) and encoded as an 8-bit RGB PNG with the grey
replicated in the three channels. The PNG encoding is fixed (no metadata, no optimisation pass,
a constant zlib level), so the same inputs and params give byte-identical PNGs.

A member that cannot be read or decoded never stops the shard: it becomes a rejected row naming the member
and the reader's or decoder's error. So does a constant image (every pixel the same grey, e.g. an all-zero
file, which the windowing renders black): it shows nothing a question could be asked about.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
from PIL import Image

from spinebench.archive import ArchiveError, open_source
from spinebench.decode import DecodeError, RenderSettings, decode_to_grey, fitted_size
from spinebench.io import rejected_frame
from spinebench.progress import LogProgress
from spinebench.quality import QUALITY_COLUMNS, image_quality
from spinebench.tables import IMAGES_SCHEMA

log = logging.getLogger(__name__)

# zlib level of the PNG encoder. Level 1 is 3-4x faster than the default 6 for files about 7% larger
# (measured on noisy 512 px slices, whose sensor noise zlib cannot compress anyway); fixed for byte-identity.
PNG_COMPRESS_LEVEL = 1


# Standardized columns rendering needs.
REQUIRED_COLUMNS: tuple[str, ...] = ("image_id", "member", "modality")


class MemberReader(Protocol):
    """What rendering needs from a source archive (`spinebench.archive.SourceArchive` provides it)."""

    def read(self, member: str) -> bytes: ...


class OutcomeCache(Protocol):
    """Where rendered images may already be (`spinebench.render_cache.RenderCache`, the store)."""

    def outcome(
        self, data: bytes, member: str, modality: str, settings: RenderSettings
    ) -> RenderedImage | DecodeFailure: ...


@dataclass(frozen=True)
class RenderedImage:
    """One rendered image: its PNG bytes, size and quality metrics."""

    png: bytes
    width: int
    height: int
    quality: dict[str, float]


def resample(grey: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A uint8 grey image resized with LANCZOS to (width, height) `size` (unchanged if already that size)."""
    height, width = grey.shape
    if size == (width, height):
        return grey
    return np.asarray(Image.fromarray(grey, mode="L").resize(size, Image.Resampling.LANCZOS))


def encode_png(grey: np.ndarray) -> bytes:
    """8-bit RGB PNG bytes of a grey image (grey replicated in R, G, B), encoded deterministically."""
    buffer = io.BytesIO()
    rgb = Image.fromarray(grey, mode="L").convert("RGB")
    rgb.save(buffer, format="PNG", optimize=False, compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def render_image(data: bytes, member: str, modality: str, settings: RenderSettings) -> RenderedImage:
    """Decode, window, downscale, score and encode one source image (raises DecodeError if it cannot)."""
    decoded = decode_to_grey(data, member, modality, settings)
    # Fitted from the stored size, so a film decoded at a reduced resolution renders at the same size.
    grey = resample(decoded.grey, fitted_size(*decoded.full_size, settings.max_side))
    height, width = grey.shape
    return RenderedImage(png=encode_png(grey), width=width, height=height, quality=image_quality(grey))


def _check_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows sorted by image_id, after checking the needed columns exist and image_ids are unique."""
    missing = [column for column in REQUIRED_COLUMNS if column not in rows.columns]
    if missing:
        raise ValueError(f"standardized table lacks column(s) {', '.join(missing)}")
    duplicated = rows["image_id"][rows["image_id"].duplicated()].astype(str).unique().tolist()
    if duplicated:
        raise ValueError(
            f"duplicate image_id(s) in the standardized table: {', '.join(sorted(duplicated)[:10])}"
        )
    return rows.sort_values("image_id", kind="mergesort").reset_index(drop=True)


def _rejection(source: str, image_id: str, member, reason: str) -> dict:
    """A rejected-table row for one image, also logged."""
    file = member if isinstance(member, str) else ""  # a missing member is None or NaN, depending on dtype
    log.warning("rejected %s (%s): %s", image_id, file or "no member", reason)
    return {"source": source, "item": image_id, "file": file, "reason": reason}


def _render_row(
    archive: MemberReader, member, modality, settings: RenderSettings, cache: OutcomeCache | None
) -> RenderedImage | str:
    """The rendered image of one row, or the reason it cannot be rendered."""
    if not isinstance(member, str) or not member:
        return "the standardized row names no archive member"
    try:
        data = archive.read(member)
    except ArchiveError as error:
        return f"cannot read archive member {member}: {error.detail}"
    except OSError as error:  # a folder member that vanished or is unreadable
        # strerror, not str(error): the latter holds the absolute path, which differs between machines.
        return f"cannot read archive member {member}: {error.strerror or type(error).__name__}"
    if cache is not None:
        outcome = cache.outcome(data, member, str(modality), settings)
    else:
        outcome = decode_outcome(data, member, str(modality), settings)
    if isinstance(outcome, DecodeFailure):
        return f"cannot decode archive member {member}: {outcome.message}"
    level = constant_level(outcome)
    if level is not None:
        return f"constant image (every pixel {level}): nothing to see"
    return outcome


def constant_level(image: RenderedImage) -> int | None:
    """The grey level of every pixel of a constant rendered image; None when its pixels differ.

    Decided on the stored `variance`, which is exactly 0 for a constant image and only for one (computed
    on integers, `spinebench.quality`), so that an image taken from the store is judged as a fresh one;
    only then is the PNG opened, to read the level.
    """
    if image.quality["variance"] != 0.0:
        return None
    with Image.open(io.BytesIO(image.png)) as png:
        return int(png.convert("L").getpixel((0, 0)))


@dataclass(frozen=True)
class DecodeFailure:
    """Why a member's bytes cannot be decoded (the decoder's message; the member is named by the caller)."""

    message: str


def decode_outcome(
    data: bytes, member: str, modality: str, settings: RenderSettings
) -> RenderedImage | DecodeFailure:
    """The rendered image of a member's bytes, or why they cannot be decoded."""
    try:
        return render_image(data, member, modality, settings)
    except DecodeError as error:
        return DecodeFailure(str(error))


def _image_record(image_id: str, outcome: RenderedImage) -> dict:
    """The images-table row of one rendered image."""
    return {
        "image_id": image_id,
        "png": outcome.png,
        # Lets consumers (the prediction fingerprint) tell a re-rendered image from the old one.
        "png_sha256": hashlib.sha256(outcome.png).hexdigest(),
        "width": outcome.width,
        "height": outcome.height,
        **{column: outcome.quality[column] for column in QUALITY_COLUMNS},
    }


def images_frame(records: list[dict]) -> pd.DataFrame:
    """The images table (IMAGES_SCHEMA columns and dtypes) from per-image records."""
    table = pa.Table.from_pylist(records, schema=IMAGES_SCHEMA)
    return table.to_pandas()


def render_rows(
    rows: pd.DataFrame,
    archive: MemberReader,
    source: str,
    settings: Mapping | RenderSettings,
    cache: OutcomeCache | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Render standardized `rows` whose members `archive` reads: (images table, rejected table).

    Both tables are in image_id order; every row ends up in exactly one of them. With a `cache`, images
    whose content key is in the store are not decoded again.
    """
    if not isinstance(settings, RenderSettings):
        settings = RenderSettings.from_params(settings)
    rows = _check_rows(rows)
    images, rejected = [], []
    with LogProgress(log, f"{source} render", len(rows), unit="images") as progress:
        for image_id, member, modality in rows[list(REQUIRED_COLUMNS)].itertuples(index=False, name=None):
            outcome = _render_row(archive, member, modality, settings, cache)
            if isinstance(outcome, str):
                rejected.append(_rejection(source, str(image_id), member, outcome))
            else:
                images.append(_image_record(str(image_id), outcome))
            progress.advance(failed=isinstance(outcome, str))
    log.info("%s: rendered %d image(s), rejected %d", source, len(images), len(rejected))
    return images_frame(images), rejected_frame(rejected)


def render_shard(
    standardized_df: pd.DataFrame,
    archive_path: str | os.PathLike,
    source: str,
    settings: Mapping,
    cache: OutcomeCache | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Render one shard's standardized rows from the source archive at `archive_path`.

    Returns (images table, rejected table), both in image_id order (docs/contracts.md).
    """
    settings = RenderSettings.from_params(settings)
    with open_source(source, archive_path) as archive:
        return render_rows(standardized_df, archive, source, settings, cache)
