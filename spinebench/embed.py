"""Image embeddings with open_clip (SigLIP2 by default) for distractor mining and nearest-neighbour baselines.

`load_encoder(settings, seed)` builds the image tower of an open_clip model from the `embed` params:

- `architecture`: a file `resources/encoders/{architecture}.json` (an open_clip model config, registered
  with `open_clip.add_model_config`), else a built-in open_clip architecture such as `ViT-B-16-SigLIP2`.
- `checkpoint`: a local weights file handed to open_clip as the `pretrained=` path. Weights are never
  fetched from a hub: a checkpoint that is not an existing file is an error. Without a checkpoint the
  weights are initialised from `seed` (torch.manual_seed before the model is created), which only makes
  sense for the tiny demo encoder.
- preprocessing is built explicitly from the params (image_size, resize_mode, interpolation, mean, std)
  with open_clip's `PreprocessCfg`/`image_transform_v2`, never taken from a pretrained tag, so that a
  checkpoint is fed exactly what it was trained on (SigLIP: squash, bicubic, mean = std = 0.5).
- `device: auto` uses CUDA when available, else the CPU.

Only the image tower is kept after loading (the text tower of SigLIP2 is most of its weights and is never
used here). Embeddings are L2-normalised float32.

About `resources/encoders/tiny-siglip.json`: a SigLIP-shaped model (attention-pool head, logit bias, no
causal text mask) small enough for CPU tests. Creating any model never touches the network here: the
tiny vision tower is open_clip's own ViT (no timm weights), its text tower is open_clip's own transformer
(no `hf_model_name`, so no Hugging Face config or weights) and there is no `hf_tokenizer_name`. Its
`vocab_size` is that of open_clip's bundled `SimpleTokenizer`, so the text tower could be driven offline with
`open_clip.SimpleTokenizer(context_length=16)`. Note that `open_clip.get_tokenizer("tiny-siglip")` would
*not* work offline: open_clip picks the SigLIP sentencepiece tokenizer (downloaded) for any model name
containing "siglip". The pipeline never asks for a tokenizer.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image

from spinebench.embeddings import (
    ENCODER_CONFIG_DIR,
    EmbedFunction,
    EncoderSettings,
    expected_device_kind,
    local_config_path,
)
from spinebench.progress import LogProgress

log = logging.getLogger(__name__)

# Local config files already registered with open_clip in this process (registering twice is harmless
# but grows open_clip's search path).
_registered_configs: set[Path] = set()


# ------------------------------------------------------------------------------------------ architecture


def register_architecture(architecture: str, config_dir: Path = ENCODER_CONFIG_DIR) -> str:
    """Make `architecture` known to open_clip (registering a local config file) and return its name.

    Raises ValueError when it is neither a local config nor a built-in open_clip architecture.
    """
    path = local_config_path(architecture, config_dir)
    if path is not None and path.resolve() not in _registered_configs:
        config = _read_config(path)
        if not all(key in config for key in ("embed_dim", "vision_cfg", "text_cfg")):
            # open_clip silently skips such a file; say why instead.
            raise ValueError(f"{path}: an open_clip model config needs embed_dim, vision_cfg and text_cfg")
        open_clip.add_model_config(path)
        _registered_configs.add(path.resolve())
    if architecture not in open_clip.list_models():
        raise ValueError(
            f"embed.architecture {architecture!r} is neither {config_dir / (architecture + '.json')} nor a "
            f"built-in open_clip architecture"
        )
    return architecture


def _read_config(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable JSON model config ({error})") from error


def native_image_size(architecture: str) -> int:
    """The input side an architecture is built for (its config's vision_cfg.image_size)."""
    config = open_clip.get_model_config(register_architecture(architecture))
    size = config["vision_cfg"].get("image_size", 224)
    return int(size if isinstance(size, int) else size[0])


def resolve_device(device: str) -> torch.device:
    """`auto` -> CUDA when available, else CPU; anything else as given (cpu, cuda, cuda:N)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"embed.device is {device!r} but CUDA is not available")
    return resolved


def checkpoint_file(checkpoint: str) -> str:
    """The checkpoint as an absolute path to an existing file (never a hub tag)."""
    path = Path(checkpoint).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"embed.checkpoint {checkpoint!r} is not a file; checkpoints are local files")
    # Absolute: open_clip checks `pretrained` against its tag list (which downloads) before the file system.
    return str(path)


def build_preprocess(settings: EncoderSettings) -> Callable[[Image.Image], torch.Tensor]:
    """The eval-time image transform described by the params (PIL RGB image -> normalised tensor)."""
    config = PreprocessCfg(
        size=settings.image_size,
        mode="RGB",
        mean=settings.mean,
        std=settings.std,
        interpolation=settings.interpolation,
        resize_mode=settings.resize_mode,
    )
    return image_transform_v2(config, is_train=False)


def configure_torch(device: torch.device, threads: int | None) -> None:
    """Deterministic kernels, and the job's thread count on the CPU."""
    if device.type == "cuda":
        # cuBLAS is only deterministic with a fixed workspace, which must be set before CUDA initialises.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    # warn_only: an op without a deterministic kernel warns instead of failing the job.
    torch.use_deterministic_algorithms(True, warn_only=True)
    if threads:
        torch.set_num_threads(int(threads))


# ---------------------------------------------------------------------------------------------- encoder


@dataclass
class Encoder:
    """An open_clip image tower with its preprocessing: PNG bytes in, L2-normalised embeddings out."""

    visual: torch.nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]
    device: torch.device
    batch_size: int
    dim: int
    architecture: str

    def embed_pngs(self, pngs: Sequence[bytes], names: Sequence[str] | None = None) -> np.ndarray:
        """Embeddings (n, dim) float32, L2-normalised, of PNG images.

        Images are decoded and preprocessed `batch_size` at a time, but each one goes through the encoder
        alone: the matrix kernels' blocking depends on the batch's shape and on a row's place in it, so a
        batched embedding changes in its last bits with the images beside it. Alone, an image's embedding
        depends on its pixels only, which is what lets the store serve it to any shard.
        `names` (e.g. image_ids) only label errors: an undecodable PNG raises ValueError naming it.
        """
        names = list(names) if names is not None else [f"#{index}" for index in range(len(pngs))]
        rows = [np.zeros((0, self.dim), dtype=np.float32)]
        for start in range(0, len(pngs), self.batch_size):
            stop = start + self.batch_size
            batch = zip(pngs[start:stop], names[start:stop], strict=True)
            tensors = [self.preprocess(_png_image(data, name)) for data, name in batch]
            rows.extend(self._embed_one(tensor) for tensor in tensors)
        return np.concatenate(rows, axis=0)

    def _embed_one(self, image: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            features = self.visual(image.unsqueeze(0).to(self.device, dtype=torch.float32))
            return F.normalize(features.float(), dim=-1).cpu().numpy().astype(np.float32, copy=False)


def _png_image(data: bytes, name: str) -> Image.Image:
    """A decoded RGB image; ValueError naming the image when the bytes are not a readable image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError... for bad bytes
        raise ValueError(f"image {name}: PNG cannot be decoded ({type(error).__name__}: {error})") from error


def load_encoder(settings: Mapping | EncoderSettings, seed: int, threads: int | None = None) -> Encoder:
    """Build the encoder described by the `embed` params (see the module docstring)."""
    if not isinstance(settings, EncoderSettings):
        settings = EncoderSettings.from_params(settings)
    device = resolve_device(settings.device)
    configure_torch(device, threads)
    architecture = register_architecture(settings.architecture)
    native = native_image_size(architecture)
    if native != settings.image_size:
        # Checked before any weights are read: a mismatch would silently interpolate position embeddings.
        raise ValueError(
            f"embed.image_size is {settings.image_size} but architecture {architecture} takes {native} px"
        )
    checkpoint = checkpoint_file(settings.checkpoint) if settings.checkpoint else None
    # Seeded before creation: without a checkpoint the random initialisation *is* the encoder.
    torch.manual_seed(seed)
    model = open_clip.create_model(
        architecture,
        pretrained=checkpoint,
        precision="fp32",
        device="cpu",
        pretrained_image=False,
        pretrained_text=False,
    )
    # Only the image tower is kept: the rest of the model (SigLIP2's large text tower) is freed.
    visual = model.visual.to(device).eval()
    log.info("encoder %s (checkpoint %s) on %s", architecture, checkpoint or f"none, seed {seed}", device)
    return Encoder(
        visual=visual,
        preprocess=build_preprocess(settings),
        device=device,
        batch_size=settings.batch_size,
        dim=int(open_clip.get_model_config(architecture)["embed_dim"]),
        architecture=architecture,
    )


# --------------------------------------------------------------------------------------------- tables


def make_embedder(settings: EncoderSettings, seed: int, threads: int | None = None) -> EmbedFunction:
    """Load the encoder and return its embedding function, after checking that it runs on the device kind
    its store keys were computed for (`spinebench.embeddings.expected_device_kind`)."""
    encoder = load_encoder(settings, seed, threads=threads)
    expected = expected_device_kind(settings.device)
    if encoder.device.type != expected:
        raise ValueError(
            f"embed.device {settings.device!r} runs on {encoder.device.type}, but the store keys assumed "
            f"{expected}; set embed.device to cpu or cuda explicitly"
        )

    def embed(pngs: Sequence[bytes], image_ids: Sequence[str]) -> np.ndarray:
        chunks = [np.zeros((0, encoder.dim), dtype=np.float32)]
        with LogProgress(log, "embed", len(pngs), unit="images") as progress:
            for start in range(0, len(pngs), encoder.batch_size):
                stop = start + encoder.batch_size
                chunks.append(encoder.embed_pngs(pngs[start:stop], names=image_ids[start:stop]))
                progress.advance(len(chunks[-1]))
        return np.concatenate(chunks, axis=0)

    return embed
