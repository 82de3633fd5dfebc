"""Backend for a local Hugging Face vision-language model (AutoModelForImageTextToText + AutoProcessor).

The model is loaded from a local folder only (never the hub), on CUDA when present, and answers items in
batches with greedy decoding. Prompts are wrapped with the processor's chat template, the image first.
Left padding is forced because a decoder-only model generates after the last position of every row.

torch and transformers are imported when the model is loaded, so that merely declaring such a model (or
computing its fingerprint) stays cheap.
"""

from __future__ import annotations

import io
import itertools
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from spinebench.backends.base import (
    Backend,
    BackendError,
    Item,
    ItemResult,
    ResultSink,
    check_settings,
    number_setting,
)

log = logging.getLogger(__name__)

# Settings that change speed or placement but not (beyond floating-point noise) the answers.
OPERATIONAL_SETTINGS = frozenset({"batch_size", "device"})
SETTINGS = frozenset({"path", "max_new_tokens", "torch_dtype", "trust_remote_code"}) | OPERATIONAL_SETTINGS
DTYPES = ("auto", "float32", "float16", "bfloat16")


def resolve_device(requested: str) -> str:
    """`auto` becomes cuda when a GPU is visible, else cpu; anything else is used as given."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def chat_messages(item: Item) -> list[dict]:
    """One user turn: the image (when the item has one) followed by the prompt text."""
    content: list[dict] = []
    if item.image_png is not None:
        content.append({"type": "image"})
    content.append({"type": "text", "text": item.prompt})
    return [{"role": "user", "content": content}]


def _decode_image(item: Item):
    from PIL import Image

    try:
        with Image.open(io.BytesIO(item.image_png)) as image:
            return image.convert("RGB")
    except Exception as error:  # PIL raises several unrelated types for bad data
        raise BackendError(
            f"question {item.question_id}: image {item.image_id} is not a readable PNG: {error}"
        ) from error


class TransformersBackend(Backend):
    """Batched greedy generation with a local image-text-to-text model."""

    backend_name = "transformers"
    needs_images = True

    def __init__(self, model_name: str, settings: Mapping) -> None:
        super().__init__(model_name)
        check_settings(model_name, settings, SETTINGS, required=("path",))
        self.path = Path(settings["path"])
        self.batch_size = number_setting(model_name, settings, "batch_size", 4, integer=True, minimum=1)
        self.max_new_tokens = number_setting(
            model_name, settings, "max_new_tokens", 1024, integer=True, minimum=1
        )
        self.torch_dtype = settings.get("torch_dtype", "auto")
        if self.torch_dtype not in DTYPES:
            raise BackendError(f"model {model_name!r}: torch_dtype must be one of {', '.join(DTYPES)}")
        self.device_setting = settings.get("device", "auto")
        self.trust_remote_code = bool(settings.get("trust_remote_code", False))
        self._settings = dict(settings)
        self._model = None
        self._processor = None
        self.device: str | None = None

    def fingerprint_data(self) -> dict:
        return {
            key: value for key, value in sorted(self._settings.items()) if key not in OPERATIONAL_SETTINGS
        }

    def load(self) -> None:
        """Load processor and model from the local folder (once)."""
        if self._model is not None:
            return
        if not self.path.is_dir():
            raise BackendError(f"model {self.model_name!r}: path {self.path} is not a folder")
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.device = resolve_device(self.device_setting)
        dtype = self.torch_dtype if self.torch_dtype == "auto" else getattr(torch, self.torch_dtype)
        common = {"local_files_only": True, "trust_remote_code": self.trust_remote_code}
        processor = AutoProcessor.from_pretrained(self.path, **common)
        if getattr(processor, "chat_template", None) is None:
            raise BackendError(
                f"model {self.model_name!r}: the processor at {self.path} has no chat template"
            )
        processor.tokenizer.padding_side = "left"
        if processor.tokenizer.pad_token is None:  # batching needs a pad token; many chat models ship none
            processor.tokenizer.pad_token = processor.tokenizer.eos_token
        model = AutoModelForImageTextToText.from_pretrained(self.path, dtype=dtype, **common)
        model.to(self.device)
        model.eval()
        self._processor, self._model = processor, model
        log.info("%s: loaded %s on %s (%s)", self.model_name, self.path, self.device, model.dtype)

    def close(self) -> None:
        self._model = None
        self._processor = None
        if self.device and self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def run(self, items: Iterable[Item], on_result: ResultSink) -> None:
        self.load()
        iterator = iter(items)
        while batch := list(itertools.islice(iterator, self.batch_size)):
            for result in self._answer_batch(batch):
                on_result(result)

    def _answer_batch(self, batch: Sequence[Item]) -> list[ItemResult]:
        """Generate for a batch; when the batch fails as a whole (e.g. out of memory), retry item by item so
        that one bad item only costs its own answer."""
        started = time.perf_counter()
        try:
            texts = self.generate(batch)
        except BackendError:
            raise
        except Exception as error:
            if len(batch) == 1:
                message = f"generation failed: {type(error).__name__}: {error}"
                log.error("%s: item %s: %s", self.model_name, batch[0].question_id, message)
                return [ItemResult(batch[0].question_id, None, message, time.perf_counter() - started, 1)]
            log.warning(
                "%s: batch of %d failed (%s); retrying one by one", self.model_name, len(batch), error
            )
            self._free_cuda_memory()
            return [result for item in batch for result in self._answer_batch([item])]
        # Every item of a batch waited for the whole batch: that is its latency.
        latency = time.perf_counter() - started
        return [
            ItemResult(item.question_id, text, None, latency, 1)
            for item, text in zip(batch, texts, strict=True)
        ]

    def _free_cuda_memory(self) -> None:
        if self.device and self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def generate(self, batch: Sequence[Item]) -> list[str]:
        """Greedy responses for items that all have an image or all have none."""
        import torch

        with_image = [item.image_png is not None for item in batch]
        if any(with_image) and not all(with_image):
            # Mixed batches never come from the runner; split them rather than pad images in.
            return [text for item in batch for text in self.generate([item])]
        processor = self._processor
        texts = [
            processor.apply_chat_template(chat_messages(item), add_generation_prompt=True, tokenize=False)
            for item in batch
        ]
        inputs_kwargs = {"text": texts, "return_tensors": "pt", "padding": True}
        if all(with_image):
            inputs_kwargs["images"] = [[_decode_image(item)] for item in batch]
        inputs = processor(**inputs_kwargs).to(self.device)
        # Image tensors follow the model's dtype; token ids and masks stay integers.
        for key, value in inputs.items():
            if torch.is_floating_point(value):
                inputs[key] = value.to(self._model.dtype)
        with torch.inference_mode():
            output = self._model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return [text.strip() for text in processor.batch_decode(new_tokens, skip_special_tokens=True)]
