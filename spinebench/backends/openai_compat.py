"""Backend for any OpenAI-compatible chat-completions server (vLLM, SGLang, Ollama, hosted APIs).

Design: asyncio with exactly `concurrency` worker coroutines that pull items from the shared (lazy) item
iterator over one aiohttp session whose connection limit equals the concurrency. The bound on requests in
flight is therefore structural (a worker sends one request at a time), and a failure anywhere (a bad item,
a full disk in the result callback) cancels the others through a TaskGroup. asyncio rather than a thread
pool because `asyncio.timeout` gives a true total deadline per request (a server trickling bytes cannot
hold a worker) and 64 requests in flight cost 64 small coroutines, not 64 threads contending for the GIL.
aiohttp rather than httpx because it needs about a quarter of the client CPU per request: against a 50 ms
server on 2 cores, httpx reached 0.58 of the ideal throughput at concurrency 64 where aiohttp reaches 0.88
(bench/predict.py, 2,000 items).

Retries: 408, 429, every 5xx, connection errors, timeouts, and 2xx bodies that are not a usable
completion (malformed JSON, no `choices`) are retried up to `max_retries` times with exponential backoff
and equal jitter; a `Retry-After` header (seconds or an HTTP date) sets a floor on the delay and also
pauses every worker's next request, so a rate-limited server is not hammered by the other workers. Any
other 4xx is final. The API key is read from the environment variable named by `api_key_env` when the
run starts; it is only ever put in the Authorization header and is redacted from any recorded error text.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import logging
import os
import random
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp

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

# Settings that change how requests are sent but not what the model answers: left out of the fingerprint,
# so that raising the concurrency, say, keeps every prediction already recorded.
OPERATIONAL_SETTINGS = frozenset(
    {
        "concurrency",
        "timeout_s",
        "max_retries",
        "backoff_base_s",
        "backoff_max_s",
        "max_wait_s",
        "api_key_env",
    }
)
SETTINGS = frozenset({"base_url", "model", "temperature", "max_tokens", "extra_body"} | OPERATIONAL_SETTINGS)
RETRYABLE_STATUS = frozenset({408, 429})  # plus every 5xx
# How much of an error body is kept in the recorded error message.
ERROR_BODY_CHARS = 300


@dataclass(frozen=True)
class OpenAISettings:
    """Validated settings of one OpenAI-compatible model (params.yaml `models.{name}`)."""

    base_url: str
    model: str
    api_key_env: str | None = None
    temperature: float = 0.0
    max_tokens: int = 2048
    timeout_s: float = 120.0
    max_retries: int = 4
    concurrency: int = 8
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    # Longest single wait between attempts, Retry-After included (a server asking for an hour is not obeyed).
    max_wait_s: float = 600.0
    # Extra request-body fields passed through verbatim (e.g. {"seed": 0, "top_p": 1.0} for vLLM).
    extra_body: Mapping = field(default_factory=dict)

    @classmethod
    def from_settings(cls, model_name: str, settings: Mapping) -> OpenAISettings:
        check_settings(model_name, settings, SETTINGS, required=("base_url", "model"))
        for key in ("base_url", "model"):
            if not isinstance(settings[key], str):
                raise BackendError(f"model {model_name!r}: setting {key!r} must be a string")
        if not settings["base_url"].startswith(("http://", "https://")):
            raise BackendError(f"model {model_name!r}: base_url must start with http:// or https://")
        api_key_env = settings.get("api_key_env")
        if api_key_env is not None and (not isinstance(api_key_env, str) or not api_key_env):
            raise BackendError(f"model {model_name!r}: api_key_env must name an environment variable")
        extra_body = settings.get("extra_body") or {}
        if not isinstance(extra_body, Mapping):
            raise BackendError(f"model {model_name!r}: extra_body must be a mapping")
        defaults = cls.__dataclass_fields__
        return cls(
            base_url=settings["base_url"].rstrip("/"),
            model=settings["model"],
            api_key_env=api_key_env,
            temperature=number_setting(model_name, settings, "temperature", defaults["temperature"].default),
            max_tokens=number_setting(
                model_name, settings, "max_tokens", defaults["max_tokens"].default, integer=True, minimum=1
            ),
            timeout_s=number_setting(
                model_name, settings, "timeout_s", defaults["timeout_s"].default, minimum=1e-3
            ),
            max_retries=number_setting(
                model_name, settings, "max_retries", defaults["max_retries"].default, integer=True
            ),
            concurrency=number_setting(
                model_name, settings, "concurrency", defaults["concurrency"].default, integer=True, minimum=1
            ),
            backoff_base_s=number_setting(
                model_name, settings, "backoff_base_s", defaults["backoff_base_s"].default
            ),
            backoff_max_s=number_setting(
                model_name, settings, "backoff_max_s", defaults["backoff_max_s"].default
            ),
            max_wait_s=number_setting(model_name, settings, "max_wait_s", defaults["max_wait_s"].default),
            extra_body=dict(extra_body),
        )

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"


class RetryableError(Exception):
    """An attempt that failed in a way worth retrying; `retry_after_s` is the server's requested delay."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class FinalError(Exception):
    """An attempt that failed in a way retrying cannot fix (a 4xx other than 408/429)."""


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None if absent or invalid."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:  # an HTTP date is always GMT; be lenient with servers that omit it
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Delay before retry number `attempt` (1-based): exponential, capped, with equal jitter.

    Equal jitter (half fixed, half random) keeps retries genuinely backing off while spreading the workers'
    retries apart, so they do not hit a recovering server in lock step.
    """
    ceiling = min(max_s, base_s * (2 ** (attempt - 1)))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def request_body(settings: OpenAISettings, item: Item) -> dict:
    """The chat-completions request for one item: the image as a PNG data URL, then the prompt text."""
    content: list[dict] = []
    if item.image_png is not None:
        encoded = base64.b64encode(item.image_png).decode("ascii")
        content.append({"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}})
    content.append({"type": "text", "text": item.prompt})
    body = {
        "model": settings.model,
        "messages": [{"role": "user", "content": content}],
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
    }
    body.update(settings.extra_body)
    return body


def _message_text(message: Mapping) -> str:
    """The text of a chat message: string content, the text parts of list content, or a refusal."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, Mapping))
    refusal = message.get("refusal")
    # A null content (e.g. a reasoning model that ran out of tokens) is an empty answer, not a transport
    # failure: retrying at temperature 0 would give the same, and extraction scores it as wrong.
    return refusal if isinstance(refusal, str) else ""


def parse_completion(body: bytes) -> str:
    """The text of a chat-completions body; RetryableError when the body is not a usable completion."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        snippet = body[:120].decode("utf-8", "replace")
        raise RetryableError(f"malformed JSON in response body ({error.msg}): {snippet!r}") from error
    if not isinstance(document, Mapping):
        raise RetryableError(f"response body is JSON but not an object: {type(document).__name__}")
    choices = document.get("choices")
    if not isinstance(choices, list) or not choices:
        detail = f"; error: {document['error']}" if "error" in document else ""
        raise RetryableError(f"response has no choices{detail}")
    message = choices[0].get("message") if isinstance(choices[0], Mapping) else None
    if not isinstance(message, Mapping):
        raise RetryableError("response choices[0] has no message")
    return _message_text(message)


def redact(text: str, secret: str | None) -> str:
    """`text` with every occurrence of the secret replaced (a server may echo request headers in errors)."""
    if secret and secret in text:
        return text.replace(secret, "[REDACTED]")
    return text


class OpenAIBackend(Backend):
    """Chat-completions over HTTP with bounded concurrency, timeouts and retries."""

    backend_name = "openai"
    needs_images = True

    def __init__(self, model_name: str, settings: Mapping, *, rng: random.Random | None = None) -> None:
        super().__init__(model_name)
        self.settings = OpenAISettings.from_settings(model_name, settings)
        self._raw_settings = dict(settings)
        # Jitter only spreads retries; it never affects answers, so it need not be seeded.
        self._rng = rng or random.Random()
        self._resume_at = 0.0  # monotonic time before which no worker sends (shared Retry-After pause)

    def fingerprint_data(self) -> dict:
        return {
            key: value for key, value in sorted(self._raw_settings.items()) if key not in OPERATIONAL_SETTINGS
        }

    def _api_key(self) -> str | None:
        """The API key from the environment, read at call time; a named but unset variable is an error."""
        name = self.settings.api_key_env
        if name is None:
            return None
        key = os.environ.get(name)
        if not key:
            raise BackendError(
                f"model {self.model_name!r}: environment variable {name} (api_key_env) is not set"
            )
        return key

    def run(self, items: Iterable[Item], on_result: ResultSink) -> None:
        api_key = self._api_key()
        try:
            asyncio.run(self._run(iter(items), on_result, api_key))
        except ExceptionGroup as group:
            # A TaskGroup wraps the failure of one worker; surface that error itself (e.g. a bad item).
            raise group.exceptions[0] from group

    async def _run(self, items: Iterator[Item], on_result: ResultSink, api_key: str | None) -> None:
        headers = {"Content-Type": "application/json"}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key}"
        # The connector's limit equals the number of workers, so every worker keeps its own keep-alive
        # connection; deadlines are enforced per attempt with asyncio.timeout (see _attempt).
        connector = aiohttp.TCPConnector(limit=self.settings.concurrency)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.settings.timeout_s)
        async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:
            async with asyncio.TaskGroup() as workers:
                for _ in range(self.settings.concurrency):
                    workers.create_task(self._worker(session, items, on_result, api_key))

    async def _worker(
        self,
        session: aiohttp.ClientSession,
        items: Iterator[Item],
        on_result: ResultSink,
        api_key: str | None,
    ) -> None:
        """Answer items one at a time until none are left."""
        # The event loop runs one coroutine at a time: next() on the shared iterator is never re-entered.
        for item in items:
            on_result(await self._answer(session, item, api_key))

    async def _answer(self, session: aiohttp.ClientSession, item: Item, api_key: str | None) -> ItemResult:
        """One item with retries: the response of the first good attempt, or the last error."""
        payload = json.dumps(request_body(self.settings, item)).encode("utf-8")
        max_attempts = 1 + self.settings.max_retries
        latency = 0.0
        for attempt in range(1, max_attempts + 1):
            await self._wait_for_shared_pause()
            started = time.monotonic()
            try:
                text = await self._attempt(session, payload)
            except FinalError as error:
                latency = time.monotonic() - started
                return self._failure(item, str(error), latency, attempt, api_key)
            except RetryableError as error:
                latency = time.monotonic() - started
                if attempt == max_attempts:
                    return self._failure(item, str(error), latency, attempt, api_key)
                await self._back_off(item, attempt, error, api_key)
            else:
                latency = time.monotonic() - started
                return ItemResult(item.question_id, text, None, latency, attempt)
        raise AssertionError("unreachable: the loop returns on the last attempt")

    async def _attempt(self, session: aiohttp.ClientSession, payload: bytes) -> str:
        """One HTTP request under a total deadline, classified into text, RetryableError or FinalError."""
        timeout_s = self.settings.timeout_s
        try:
            # A total deadline over connecting, sending and reading the whole body: a server that trickles
            # bytes cannot hold a worker longer than timeout_s.
            async with asyncio.timeout(timeout_s):
                async with session.post(self.settings.url, data=payload) as response:
                    status, body = response.status, await response.read()
                    retry_after = response.headers.get("Retry-After")
        except TimeoutError as error:
            raise RetryableError(f"request timed out after {timeout_s:g} s") from error
        except aiohttp.ClientError as error:  # refused, reset, dropped mid-body, bad HTTP
            raise RetryableError(f"connection error: {type(error).__name__}: {error}") from error
        if 200 <= status < 300:
            return parse_completion(body)
        message = (
            f"HTTP {status} from {self.settings.url}: {body[:ERROR_BODY_CHARS].decode('utf-8', 'replace')}"
        )
        if status in RETRYABLE_STATUS or status >= 500:
            raise RetryableError(message, parse_retry_after(retry_after))
        raise FinalError(message)

    async def _wait_for_shared_pause(self) -> None:
        """Hold back while a server-requested pause lasts (another worker may extend it meanwhile)."""
        while (delay := self._resume_at - time.monotonic()) > 0:
            await asyncio.sleep(delay)

    async def _back_off(self, item: Item, attempt: int, error: RetryableError, api_key: str | None) -> None:
        """Sleep before the next attempt; a Retry-After also pauses every other worker until it has passed."""
        settings = self.settings
        delay = backoff_delay(attempt, settings.backoff_base_s, settings.backoff_max_s, self._rng)
        if error.retry_after_s is not None:
            delay = max(delay, error.retry_after_s)
            self._resume_at = max(
                self._resume_at, time.monotonic() + min(error.retry_after_s, settings.max_wait_s)
            )
        delay = min(delay, settings.max_wait_s)
        log.warning(
            "%s: item %s attempt %d failed (%s); retrying in %.2f s",
            self.model_name,
            item.question_id,
            attempt,
            redact(str(error), api_key),
            delay,
        )
        await asyncio.sleep(delay)

    def _failure(
        self, item: Item, message: str, latency: float, attempts: int, api_key: str | None
    ) -> ItemResult:
        text = f"{redact(message, api_key)} (after {attempts} attempt{'s' if attempts != 1 else ''})"
        log.error("%s: item %s failed: %s", self.model_name, item.question_id, text)
        return ItemResult(item.question_id, None, text, latency, attempts)
