"""The interface every model backend implements, and the types that cross it.

A backend receives an iterable of `Item`s (question id, image PNG bytes, prompt text, options) and reports
one `ItemResult` per item through a callback, as soon as that item is finished. Reporting per item (rather
than returning a list at the end) is what lets the prediction runner append each finished item to its JSONL
file immediately, so that a killed run loses at most the items that were in flight.

Items are pulled lazily from the iterable, so the runner can load images window by window instead of
holding the whole benchmark's PNGs in memory.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from spinebench.vocab import LETTERS


class BackendError(ValueError):
    """A model configuration or an input that a backend cannot work with."""


class RunStopped(RuntimeError):
    """A backend gave up on a run because its requests kept failing (a wrong key, an unknown model, a server
    that is down): going on would only spend requests. Every item finished before the stop, failed ones
    included, was reported; the others were not tried (or were cut off in flight) and are not reported.

    `cause` says why in one line (the failure, its HTTP status and the last error); `status` is that HTTP
    status, None for a failure without one (connection refused, timeouts).
    """

    def __init__(self, cause: str, status: int | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.status = status


@dataclass(frozen=True)
class Item:
    """One question as a backend sees it."""

    question_id: str
    image_id: str
    task: str
    prompt: str
    # Letters A..E mapped to the option texts; baselines answer from these, models only see the prompt.
    options: Mapping[str, str]
    # RGB PNG bytes of the question's image; None for text-only requests (the judge) and for backends
    # whose `needs_images` is False.
    image_png: bytes | None = None


@dataclass(frozen=True)
class ItemResult:
    """What a backend produced for one item: a response or an error, never both."""

    question_id: str
    response: str | None
    error: str | None
    latency_s: float
    attempts: int

    def __post_init__(self) -> None:
        if (self.response is None) == (self.error is None):
            raise ValueError(f"item {self.question_id}: a result carries exactly one of response and error")

    @property
    def ok(self) -> bool:
        return self.error is None


ResultSink = Callable[[ItemResult], None]


@dataclass
class BackendContext:
    """What a backend may need beyond its own settings; everything is optional and loaded on demand.

    `embeddings` is a loader (not the matrix) so that backends that do not need the benchmark's image
    embeddings never pay for reading them.
    """

    model_name: str
    seed: int = 0
    # The catalog (at least image_id, disease, levels) and the library (disease, image_id).
    catalog: Any = None
    library: Any = None
    embeddings: Callable[[], tuple[list[str], Any]] | None = None
    # The predict job's task and the benchmark's question table of that task (every question, whatever the
    # split): a backend reading predictions made elsewhere maps their records to question ids with it
    # (imported). None outside a predict job (the judge).
    task: str | None = None
    questions: Any = None


class Backend(abc.ABC):
    """A model that answers benchmark items."""

    # The `backend:` value in params.yaml that selects this class.
    backend_name: ClassVar[str]
    # Whether items must carry image bytes; False lets the runner skip loading PNGs.
    needs_images: ClassVar[bool] = True

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name

    @abc.abstractmethod
    def fingerprint_data(self) -> dict:
        """JSON-serialisable data that determines the responses (not operational knobs such as concurrency).

        Predictions recorded under a different fingerprint are not reused.
        """

    @abc.abstractmethod
    def run(self, items: Iterable[Item], on_result: ResultSink) -> None:
        """Answer every item, calling `on_result` once per item as soon as it is finished."""

    def redact(self, text: str) -> str:
        """`text` without this backend's secrets (an API key); the default holds none.

        The runner applies it to the records it reads back, so that a key written by an older version (or
        echoed where it was not yet redacted) leaves the working files at the next run.
        """
        return text

    def close(self) -> None:  # noqa: B027 - an optional hook, deliberately not abstract
        """Release resources (connections, GPU memory); the default holds none."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def final_phrase(task: str, letters: Iterable[str]) -> str:
    """The paper's closing phrase for chosen letters: `My final option: [B]` / `My final options: [A, C]`."""
    chosen = sorted(set(letters), key=LETTERS.index)
    if not chosen:
        raise ValueError("a final phrase needs at least one letter")
    if task == "diagnosis":
        if len(chosen) != 1:
            raise ValueError(f"a diagnosis answer has exactly one letter, got {chosen}")
        return f"My final option: [{chosen[0]}]"
    return f"My final options: [{', '.join(chosen)}]"


def check_settings(
    model_name: str, settings: Mapping, allowed: Iterable[str], required: Iterable[str] = ()
) -> None:
    """Reject unknown or missing settings keys, naming the model (a typo must not be silently ignored)."""
    allowed_keys = set(allowed) | {"backend"}
    unknown = sorted(set(settings) - allowed_keys)
    if unknown:
        raise BackendError(
            f"model {model_name!r}: unknown setting(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(allowed_keys))}"
        )
    missing = sorted(key for key in required if settings.get(key) in (None, ""))
    if missing:
        raise BackendError(f"model {model_name!r}: missing required setting(s) {', '.join(missing)}")


def number_setting(
    model_name: str, settings: Mapping, key: str, default, *, integer: bool = False, minimum=0
):
    """settings[key] (or the default) checked to be a number above `minimum` (an int when `integer`)."""
    value = settings.get(key, default)
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < minimum:
        kind = "an integer" if integer else "a number"
        raise BackendError(
            f"model {model_name!r}: setting {key!r} must be {kind} >= {minimum}, got {value!r}"
        )
    return value
