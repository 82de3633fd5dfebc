"""Decoding large films at the resolution the rendered image keeps (JPEG 2000 resolution levels, JPEG DCT
scaling), so that a 3,000-pixel radiograph rendered at 512 pixels is not decoded in full first.

- JPEG 2000 (VinDr's lossless DICOM pixel data): a codestream holds its image as wavelet resolution levels;
  OpenJPEG's reduce factor r decodes only the levels up to 1/2^r of the full size and skips the entropy
  decoding of the others, which is most of the decoding time. We use it through Pillow's OpenJPEG binding.
- JPEG (BUU films): libjpeg scales by 1/2, 1/4 or 1/8 inside the inverse DCT (Pillow's `draft`).

Both stop at the smallest reduced size that is still at least the size the renderer resamples to, so the
final LANCZOS resample always shrinks. The result differs slightly from decoding in full and resampling
(the wavelet's and the DCT's low-pass filters are not LANCZOS): `bench/render.py` measures by how much.

Whatever cannot take this path (a JP2-wrapped or signed codestream, a precision other than BitsStored, a
codestream Pillow refuses) returns None, and the caller decodes in full: the reduced path only ever saves
time, it never decides whether a file is readable.
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image

# Markers that open a raw JPEG 2000 codestream: SOC then SIZ (ISO/IEC 15444-1 A.4.1 and A.5.1).
_SOC_SIZ = b"\xff\x4f\xff\x51"
_COD = b"\xff\x52"


@dataclass(frozen=True)
class J2kHeader:
    """What decides whether and how far a codestream can be decoded at a reduced resolution."""

    width: int
    height: int
    components: int
    precision: int  # bits per sample of the first component
    signed: bool
    levels: int  # wavelet decomposition levels of the main header's COD marker


def j2k_header(codestream: bytes) -> J2kHeader | None:
    """The SIZ and COD fields of a raw codestream; None for anything else (a JP2 box file, garbage)."""
    if not codestream.startswith(_SOC_SIZ) or len(codestream) < 4 + 40:
        return None
    # SIZ: Lsiz Rsiz Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz XTOsiz YTOsiz Csiz, then Ssiz XRsiz YRsiz per
    # component.
    lsiz, _, xsiz, ysiz, xosiz, yosiz, *_, csiz = struct.unpack_from(">HHIIIIIIIIH", codestream, 4)
    ssiz = codestream[4 + 38]
    cod = codestream.find(_COD, 4 + lsiz)
    if cod < 0 or len(codestream) < cod + 4 + 10:
        return None
    # COD: Lcod Scod SGcod(progression, layers, MCT: 4 bytes) SPcod(decomposition levels first).
    levels = codestream[cod + 4 + 1 + 4]
    return J2kHeader(
        width=xsiz - xosiz,
        height=ysiz - yosiz,
        components=csiz,
        precision=(ssiz & 0x7F) + 1,
        signed=bool(ssiz & 0x80),
        levels=levels,
    )


def reduced_side(side: int, factor: int) -> int:
    """A side's length at reduce factor `factor` (OpenJPEG: ceil(side / 2^factor) for a zero origin)."""
    return -(-side // (1 << factor))


def reduce_factor(full: tuple[int, int], target: tuple[int, int], levels: int) -> int:
    """The largest reduce factor (at most `levels`) whose image still covers `target` on both sides."""
    factor = 0
    while (
        factor < levels
        and reduced_side(full[0], factor + 1) >= target[0]
        and reduced_side(full[1], factor + 1) >= target[1]
    ):
        factor += 1
    return factor


def decode_j2k_reduced(
    codestream: bytes, target: tuple[int, int], bits_stored: int
) -> tuple[np.ndarray, tuple[int, int]] | None:
    """(stored values at a reduced resolution covering `target`, full (width, height)), or None.

    None when the codestream is not a single unsigned component of `bits_stored` bits, when no reduction
    is possible, or when Pillow cannot decode it reduced (the caller then decodes in full).
    """
    header = j2k_header(codestream)
    if header is None or header.components != 1 or header.signed or header.precision != bits_stored:
        return None
    full = (header.width, header.height)
    factor = reduce_factor(full, target, header.levels)
    if factor == 0:
        return None
    try:
        values = _pillow_reduced(codestream, factor, full)
    except (OSError, ValueError, SyntaxError):
        return None
    if values.shape != (reduced_side(full[1], factor), reduced_side(full[0], factor)):
        return None
    # Pillow returns samples of fewer than 16 bits shifted up to fill 16 (I;16); shift them back.
    if header.precision > 8:
        values = values >> (16 - header.precision)
    return values, full


def _pillow_reduced(codestream: bytes, factor: int, full: tuple[int, int]) -> np.ndarray:
    """Decode `codestream` with OpenJPEG's reduce factor through Pillow.

    Pillow sizes the reduced image as round(side / 2^factor), half up, where OpenJPEG produces
    ceil(side / 2^factor); where the two differ Pillow's decoder fails with "broken data stream". Handing
    Pillow the full size rounded up to a multiple of 2^factor makes its rounding give OpenJPEG's size.
    """
    power = 1 << factor
    with Image.open(io.BytesIO(codestream), formats=["JPEG2000"]) as image:
        image._size = (math.ceil(full[0] / power) * power, math.ceil(full[1] / power) * power)
        image.reduce = factor
        image.load()
        return np.asarray(image)


def draft_jpeg(image: Image.Image, target: tuple[int, int]) -> None:
    """Ask libjpeg for grey levels at the smallest DCT scale (1, 1/2, 1/4, 1/8) still covering `target`.

    Only a JPEG whose colour is grey or YCbCr is drafted to grey ("L": the luma channel, as the full path's
    conversion computes it, up to rounding); other modes (CMYK) are left to the full path.
    """
    if image.format == "JPEG" and image.mode in ("L", "RGB"):
        image.draft("L", target)
