"""Embedding tables and the embedding store, without the encoder: nothing here imports torch or open_clip.

Readers of embedding shards (distractor mining, the nearest-neighbour baseline) and embed jobs whose images
are all in the store (spinebench.store) only need this module. `spinebench.embed`, which builds the open_clip
encoder and pulls in torch (several seconds of start-up), is imported only when an image must be embedded.

An embedding's store key is the SHA-256 of its PNG plus the encoder fingerprint: everything that determines
the embedding's bytes (architecture and its config file, checkpoint digest or initialisation seed,
preprocessing, the device kind, and the encoder code and library versions). The encoder runs every image on
its own (`spinebench.embed`), so an embedding does not depend on the images that share its shard or batch and
a stored one is byte-identical to a freshly computed one.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from spinebench.codeversion import code_version
from spinebench.store import Store, Tally, bytes_digest, content_key, file_digest

log = logging.getLogger(__name__)

# Local model configs: resources/encoders/{architecture}.json.
ENCODER_CONFIG_DIR = Path(__file__).resolve().parents[1] / "resources" / "encoders"

# The embeddings table of docs/contracts.md.
EMBEDDINGS_SCHEMA = pa.schema([("image_id", pa.string()), ("embedding", pa.list_(pa.float32()))])

# Store entries of embeddings: little-endian float32 vectors.
STORE_KIND = "embedding"
ENCODER_MODULES = ("spinebench.embed",)
ENCODER_LIBRARIES = ("torch", "torchvision", "open_clip_torch", "timm", "pillow", "numpy")

SETTING_KEYS = (
    "architecture",
    "checkpoint",
    "image_size",
    "resize_mode",
    "interpolation",
    "mean",
    "std",
    "batch_size",
    "device",
)


@dataclass(frozen=True)
class EncoderSettings:
    """The `embed` params that determine the embeddings (the encoder's *name* is only a path component)."""

    architecture: str
    checkpoint: str | None
    image_size: int
    resize_mode: str
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    batch_size: int
    device: str

    @classmethod
    def from_params(cls, params: Mapping) -> EncoderSettings:
        """Build from the params mapping (extra keys such as `encoder` are ignored)."""
        missing = [key for key in SETTING_KEYS if key not in params]
        if missing:
            raise ValueError(f"embed settings lack {', '.join(missing)}")
        settings = cls(
            architecture=str(params["architecture"]),
            checkpoint=None if params["checkpoint"] in (None, "") else str(params["checkpoint"]),
            image_size=int(params["image_size"]),
            resize_mode=str(params["resize_mode"]),
            interpolation=str(params["interpolation"]),
            mean=tuple(float(value) for value in params["mean"]),
            std=tuple(float(value) for value in params["std"]),
            batch_size=int(params["batch_size"]),
            device=str(params["device"]),
        )
        if len(settings.mean) != 3 or len(settings.std) != 3 or min(settings.std) <= 0:
            raise ValueError(f"embed.mean/std need 3 values each, std > 0: {settings.mean}, {settings.std}")
        if settings.batch_size < 1:
            raise ValueError(f"embed.batch_size must be positive, got {settings.batch_size}")
        return settings


def local_config_path(architecture: str, config_dir: Path = ENCODER_CONFIG_DIR) -> Path | None:
    """The local config file `config_dir/{architecture}.json`, or None if there is none."""
    path = config_dir / f"{architecture}.json"
    return path if path.is_file() else None


# --------------------------------------------------------------------------------------- fingerprint


def _torch_cuda_build() -> bool:
    """Whether the installed torch is a CUDA build, read from torch/version.py without importing torch."""
    spec = find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    version_file = Path(list(spec.submodule_search_locations)[0]) / "version.py"
    try:
        text = version_file.read_text(encoding="utf-8")
    except OSError:
        return False
    return re.search(r"^cuda\b[^=\n]*=\s*['\"]", text, flags=re.MULTILINE) is not None


def expected_device_kind(device: str) -> str:
    """The device kind (`cpu` or `cuda`) the encoder will run on, known without importing torch.

    `auto` means CUDA when torch is a CUDA build, a GPU is visible to the driver and CUDA_VISIBLE_DEVICES
    does not hide it. `spinebench.embed` checks the real device against this before embedding anything.
    """
    if device != "auto":
        return device.split(":", 1)[0]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return "cpu"
    gpus = Path("/proc/driver/nvidia/gpus")
    has_gpu = gpus.is_dir() and any(gpus.iterdir())
    return "cuda" if has_gpu and _torch_cuda_build() else "cpu"


def encoder_fingerprint(settings: EncoderSettings, seed: int, config_dir: Path = ENCODER_CONFIG_DIR) -> dict:
    """Everything that determines an embedding's bytes besides the image (see the module docstring).

    Hashes the checkpoint file (about a second for a SigLIP2 B/16 checkpoint): its path alone would not
    notice a replaced file, and its digest lets clones with the checkpoint elsewhere share entries.
    """
    config = local_config_path(settings.architecture, config_dir)
    return {
        "architecture": settings.architecture,
        "config_sha256": file_digest(config) if config else None,
        "checkpoint_sha256": file_digest(settings.checkpoint) if settings.checkpoint else None,
        # Without a checkpoint the seeded random initialisation *is* the encoder.
        "init_seed": None if settings.checkpoint else int(seed),
        "preprocess": {
            key: value
            for key, value in asdict(settings).items()
            if key in ("image_size", "resize_mode", "interpolation", "mean", "std")
        },
        "device": expected_device_kind(settings.device),
        "code": code_version(ENCODER_MODULES, ENCODER_LIBRARIES),
    }


# --------------------------------------------------------------------------------------------- tables


def embeddings_frame(image_ids: Sequence[str], matrix: np.ndarray) -> pd.DataFrame:
    """The embeddings table (image_id, embedding list<float32>) of rows already in image_id order."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    if len(matrix):
        values = pa.array(matrix.ravel(), type=pa.float32())
        embeddings = pa.FixedSizeListArray.from_arrays(values, matrix.shape[1]).cast(pa.list_(pa.float32()))
    else:  # an empty shard (a source that kept no image there) has no dimension to speak of
        embeddings = pa.array([], type=pa.list_(pa.float32()))
    table = pa.table(
        {
            "image_id": pa.array(list(image_ids), type=pa.string()),
            "embedding": embeddings,
        },
        schema=EMBEDDINGS_SCHEMA,
    )
    return table.to_pandas()


def sorted_images(images_df: pd.DataFrame) -> pd.DataFrame:
    """The images table in image_id order; ValueError naming duplicated image_ids."""
    images = images_df.sort_values("image_id", kind="mergesort").reset_index(drop=True)
    duplicated = images["image_id"][images["image_id"].duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"duplicate image_id(s) in the images table: {', '.join(map(str, duplicated[:10]))}")
    return images


# A function that embeds PNGs: (pngs, image_ids) -> (n, dim) float32 matrix.
EmbedFunction = Callable[[Sequence[bytes], Sequence[str]], np.ndarray]


def embed_with_store(
    images_df: pd.DataFrame,
    fingerprint: Mapping,
    store: Store,
    make_embedder: Callable[[], EmbedFunction],
    tally: Tally | None = None,
) -> pd.DataFrame:
    """The embeddings table of an images table, taking every embedding the store holds from it.

    `make_embedder` is called only when some image is not in the store (it builds the encoder, which
    imports torch); the embeddings it computes are stored. Rows are in image_id order.
    """
    tally = tally if tally is not None else Tally()
    images = sorted_images(images_df)
    image_ids = images["image_id"].astype(str).tolist()
    keys = [
        content_key(STORE_KIND, {"png_sha256": bytes_digest(png), "encoder": fingerprint})
        for png in images["png"]
    ]
    vectors: list[np.ndarray | None] = [_vector(store.get(STORE_KIND, key, tally)) for key in keys]
    missing = [index for index, vector in enumerate(vectors) if vector is None]
    log.info(
        "%d of %d embedding(s) in the store, %d to compute", len(keys) - len(missing), len(keys), len(missing)
    )
    if missing:
        embed = make_embedder()
        computed = embed([images["png"][i] for i in missing], [image_ids[i] for i in missing])
        for index, vector in zip(missing, computed, strict=True):
            vectors[index] = np.asarray(vector, dtype="<f4")
            store.put(STORE_KIND, keys[index], vectors[index].tobytes(), tally)
    dims = {vector.shape[0] for vector in vectors}
    if len(dims) > 1:
        raise ValueError(f"embeddings of different lengths {sorted(dims)} for one encoder fingerprint")
    matrix = np.stack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)
    return embeddings_frame(image_ids, matrix)


def _vector(payload: bytes | None) -> np.ndarray | None:
    """A stored embedding (little-endian float32), or None."""
    if payload is None:
        return None
    return np.frombuffer(payload, dtype="<f4").astype(np.float32)


# --------------------------------------------------------------------------------------------- readers


def _read_embedding_shard(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """(image_ids, matrix) of one embeddings file; ValueError naming the file if it is malformed."""
    table = pq.read_table(path, columns=["image_id", "embedding"])
    embeddings = table["embedding"].combine_chunks()
    if embeddings.null_count or table["image_id"].null_count:
        raise ValueError(f"{path}: missing image_id or embedding values")
    lengths = pc.list_value_length(embeddings).to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != lengths[0]).any():
        raise ValueError(f"{path}: embeddings of different lengths {sorted(set(lengths.tolist()))}")
    dim = int(lengths[0]) if len(lengths) else 0
    values = embeddings.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return table["image_id"].to_pylist(), values.reshape(len(lengths), dim)


def load_embeddings(paths: Sequence[str | os.PathLike]) -> tuple[list[str], np.ndarray]:
    """Concatenate embedding shards into (image_ids, matrix (n, d) float32), rows in image_id order.

    Sorting makes the result independent of the order the shards are listed in. Raises ValueError for an
    image_id in more than one shard or shards of different dimensions, naming the files.
    """
    image_ids: list[str] = []
    matrices: list[np.ndarray] = []
    origin: dict[str, str] = {}
    for path in paths:
        shard_ids, matrix = _read_embedding_shard(path)
        if (
            matrices
            and matrix.shape[0]
            and matrices[-1].shape[0]
            and matrix.shape[1] != matrices[-1].shape[1]
        ):
            raise ValueError(
                f"{path}: {matrix.shape[1]}-d embeddings, other shards have {matrices[-1].shape[1]}"
            )
        for image_id in shard_ids:
            if image_id in origin:
                raise ValueError(f"image_id {image_id} is in both {origin[image_id]} and {path}")
            origin[image_id] = str(path)
        image_ids.extend(shard_ids)
        if matrix.shape[0]:
            matrices.append(matrix)
    if not matrices:
        return [], np.zeros((0, 0), dtype=np.float32)
    order = sorted(range(len(image_ids)), key=image_ids.__getitem__)
    return [image_ids[index] for index in order], np.concatenate(matrices, axis=0)[order]
