"""Rendered images in the content-addressed store (spinebench.store): a rerun job decodes only new files.

A render entry's key is the SHA-256 of the raw file's bytes, how they are decoded (file suffix, modality),
the render settings and the code version of the modules and libraries that render (`spinebench.codeversion`:
comments and docstrings do not count). Its payload is one JSON line (size and quality metrics, or the
decoder's message for a file that cannot be decoded) followed by the PNG bytes.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import PurePosixPath

from spinebench.codeversion import code_version
from spinebench.decode import RenderSettings
from spinebench.quality import QUALITY_COLUMNS
from spinebench.render import DecodeFailure, RenderedImage, decode_outcome
from spinebench.store import Store, Tally, bytes_digest, content_key

STORE_KIND = "render"
# The modules whose code decides a rendered image's bytes (this one too: it decides the payload format).
RENDER_MODULES = (
    "spinebench.render",
    "spinebench.decode",
    "spinebench.scaled_decode",
    "spinebench.quality",
    "spinebench.render_cache",
)
RENDER_LIBRARIES = ("numpy", "pillow", "pydicom", "pylibjpeg", "pylibjpeg-openjpeg", "SimpleITK")


class RenderCache:
    """Looks rendered images up in the store by content key and stores the ones it computes.

    Decoding failures are stored too (the same bytes fail the same way), so a hostile or corrupt file costs
    its decoding time once. The `tally` counts what one job found and computed.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.tally = Tally()
        self.code = code_version(RENDER_MODULES, RENDER_LIBRARIES)

    def key(self, data: bytes, member: str, modality: str, settings: RenderSettings) -> str:
        """The content key of rendering `data` (the member's name matters only through its suffix)."""
        fields = {
            "raw_sha256": bytes_digest(data),
            "suffix": PurePosixPath(member).suffix.lower(),
            "modality": modality,
            "settings": asdict(settings),
            "code": self.code,
        }
        return content_key(STORE_KIND, fields)

    def outcome(
        self, data: bytes, member: str, modality: str, settings: RenderSettings
    ) -> RenderedImage | DecodeFailure:
        """The stored outcome of rendering `data`, else the computed one (then stored)."""
        key = self.key(data, member, modality, settings)
        payload = self.store.get(STORE_KIND, key, self.tally)
        if payload is not None:
            return unpack_outcome(payload)
        outcome = decode_outcome(data, member, modality, settings)
        self.store.put(STORE_KIND, key, pack_outcome(outcome), self.tally)
        return outcome


def pack_outcome(outcome: RenderedImage | DecodeFailure) -> bytes:
    """Store payload of a render outcome: one JSON line (size and metrics, or the failure) then the PNG."""
    if isinstance(outcome, DecodeFailure):
        return json.dumps({"decode_error": outcome.message}).encode("utf-8") + b"\n"
    meta = {
        "width": outcome.width,
        "height": outcome.height,
        "quality": {column: float(outcome.quality[column]) for column in QUALITY_COLUMNS},
    }
    return json.dumps(meta, sort_keys=True).encode("utf-8") + b"\n" + outcome.png


def unpack_outcome(payload: bytes) -> RenderedImage | DecodeFailure:
    """The render outcome a store payload holds (`pack_outcome`'s inverse)."""
    line, _, png = payload.partition(b"\n")
    meta = json.loads(line)
    if "decode_error" in meta:
        return DecodeFailure(str(meta["decode_error"]))
    return RenderedImage(
        png=png, width=int(meta["width"]), height=int(meta["height"]), quality=meta["quality"]
    )
