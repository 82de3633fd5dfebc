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
other 4xx is final.

Failure budget: a run whose requests all fail (a wrong key, an unknown model, a server that is down) must
not try every item through every retry: against a paid API that burns thousands of calls and hours. The
run stops, raising `RunStopped` with one line naming the cause, once `max_consecutive_failures` items in
a row (in the order they finish) failed after all their retries, or sooner, once `STOP_EARLY_ITEMS` items
in a row failed with the same status of `STOP_EARLY_STATUS` (401, 403: the key is refused; 404: no such
model or endpoint), which no later item can escape. Items finished before the stop are reported as
usual, so the runner keeps them and a rerun asks only the rest. A transient outage longer than the
retries can also trip it; the rerun then carries on where it stopped. A large value all but turns the
budget off (for a server known to refuse many items one by one, say by a content filter).

Secrets: the API key is read from the environment variable named by `api_key_env` when the run starts and
is only ever put in the Authorization header. A server may echo it back, so every string that leaves the
backend (responses, error messages, log lines) is redacted first, before any cut to length (see
spinebench.backends.redaction).

Settings (params.yaml `models.{name}` with `backend: openai`): base_url and model (required); api_key_env,
temperature, max_tokens, extra_body (merged into the request body); and, not changing answers:
concurrency, timeout_s, max_retries, backoff_base_s, backoff_max_s, max_wait_s (cap on one Retry-After
wait), max_consecutive_failures (default 10, at least 1).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import functools
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp

from spinebench.backends.base import (
    Backend,
    BackendError,
    Item,
    ItemResult,
    ResultSink,
    RunStopped,
    check_settings,
    number_setting,
)
from spinebench.backends.redaction import Redactor, clip, redacting_logs

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
        "max_consecutive_failures",
    }
)
SETTINGS = frozenset({"base_url", "model", "temperature", "max_tokens", "extra_body"} | OPERATIONAL_SETTINGS)
RETRYABLE_STATUS = frozenset({408, 429})  # plus every 5xx
# How much of an error body is kept in the recorded error message (cut after redaction, never before).
ERROR_BODY_CHARS = 300
# Final statuses that every later item would meet too (key refused; no such model or endpoint): a run stops
# once STOP_EARLY_ITEMS items in a row failed with the same one of them, long before the general budget.
STOP_EARLY_STATUS = frozenset({401, 403, 404})
STOP_EARLY_ITEMS = 3


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
    # Items failing in a row (after all retries) that stop the run (see the module docstring).
    max_consecutive_failures: int = 10

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
            max_consecutive_failures=number_setting(
                model_name,
                settings,
                "max_consecutive_failures",
                defaults["max_consecutive_failures"].default,
                integer=True,
                minimum=1,
            ),
        )

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"


class AttemptError(Exception):
    """An attempt that failed; its message is already redacted. `status`: the HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetryableError(AttemptError):
    """An attempt that failed in a way worth retrying; `retry_after_s` is the server's requested delay."""

    def __init__(self, message: str, retry_after_s: float | None = None, status: int | None = None) -> None:
        super().__init__(message, status)
        self.retry_after_s = retry_after_s


class ConnectionFailed(RetryableError):
    """No HTTP answer at all: refused, reset, dropped mid-body (a server that is down, a wrong host)."""


class FinalError(AttemptError):
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


# The redactor of a run without an API key: it still removes Bearer values a server echoes.
NO_SECRETS = Redactor()


def parse_completion(body: bytes, scrub: Callable[[str], str] = NO_SECRETS) -> str:
    """The text of a chat-completions body; RetryableError when the body is not a usable completion.

    `scrub` (the run's Redactor) is applied to the answer and to any body text quoted in an error, before
    the quote is cut to length.
    """
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        snippet = clip(scrub(body.decode("utf-8", "replace")), 120)
        raise RetryableError(f"malformed JSON in response body ({error.msg}): {snippet!r}") from error
    if not isinstance(document, Mapping):
        raise RetryableError(f"response body is JSON but not an object: {type(document).__name__}")
    choices = document.get("choices")
    if not isinstance(choices, list) or not choices:
        detail = (
            f"; error: {clip(scrub(str(document['error'])), ERROR_BODY_CHARS)}" if "error" in document else ""
        )
        raise RetryableError(f"response has no choices{detail}")
    message = choices[0].get("message") if isinstance(choices[0], Mapping) else None
    if not isinstance(message, Mapping):
        raise RetryableError("response choices[0] has no message")
    return scrub(_message_text(message))


def failure_hint(error: AttemptError, base_url: str) -> str:
    """What to check for a failure that stopped a run ("" when there is nothing specific to say)."""
    if error.status in (401, 403):
        return "the server refuses the API key: check api_key_env and the key it names"
    if error.status == 404:
        return "no such model or endpoint: check model and base_url"
    if isinstance(error, ConnectionFailed):
        return f"is the server at {base_url} up?"
    return ""


@dataclass
class FailureStreak:
    """The items that failed in a row (after all retries, in the order they finished), shared by the
    workers of one run; `add` says when the run should stop (see the module docstring)."""

    limit: int  # max_consecutive_failures, at least 1
    items: int = 0
    same_status_items: int = 0  # the tail of the streak failing with one and the same HTTP status
    status: int | None = None

    def add(self, error: AttemptError | None) -> str | None:
        """Count one finished item (`error` None: it succeeded); why the run should stop, or None."""
        if error is None:
            self.items, self.same_status_items, self.status = 0, 0, None
            return None
        same = self.items > 0 and error.status == self.status
        self.items += 1
        self.same_status_items = self.same_status_items + 1 if same else 1
        self.status = error.status
        if error.status in STOP_EARLY_STATUS and self.same_status_items >= min(STOP_EARLY_ITEMS, self.limit):
            return f"{self.same_status_items} items in a row failed with HTTP {error.status}"
        if self.items >= self.limit:
            limit = f"max_consecutive_failures: {self.limit}"
            return f"{self.items} items in a row failed after all retries ({limit})"
        return None


@functools.lru_cache(maxsize=4)
def _redactor_for(api_key: str | None) -> Redactor:
    """One Redactor per key: the runner redacts every record it reads back, thousands per run."""
    return Redactor([api_key])


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
        self._scrub = NO_SECRETS  # the run's redactor, holding its API key (set by run)
        self._streak = FailureStreak(self.settings.max_consecutive_failures)

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

    def redact(self, text: str) -> str:
        """`text` without the API key (as far as the environment holds it now) or any Bearer value."""
        name = self.settings.api_key_env
        return _redactor_for(os.environ.get(name) if name else None)(text)

    def run(self, items: Iterable[Item], on_result: ResultSink) -> None:
        """Answer the items; RunStopped when the failure budget is spent (finished items were reported)."""
        api_key = self._api_key()
        self._scrub = _redactor_for(api_key)
        self._streak = FailureStreak(self.settings.max_consecutive_failures)
        with redacting_logs(self._scrub):
            try:
                asyncio.run(self._run(iter(items), on_result, api_key))
            except ExceptionGroup as group:
                # A TaskGroup wraps the failure of one worker; surface that error itself (e.g. a bad item,
                # or RunStopped, whose raising cancelled the other workers mid-item).
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
                    workers.create_task(self._worker(session, items, on_result))

    async def _worker(
        self, session: aiohttp.ClientSession, items: Iterator[Item], on_result: ResultSink
    ) -> None:
        """Answer items one at a time until none are left or the failure budget is spent."""
        # The event loop runs one coroutine at a time: next() on the shared iterator is never re-entered,
        # and the streak is updated by one worker at a time.
        for item in items:
            result, error = await self._answer(session, item)
            on_result(result)  # first, so that the item that spends the budget is recorded too
            reason = self._streak.add(error)
            if reason is not None:
                raise self._stopped(reason, error, result)

    def _stopped(self, reason: str, error: AttemptError, result: ItemResult) -> RunStopped:
        """The RunStopped of a spent failure budget: why, what to check, and the last error."""
        hint = failure_hint(error, self.settings.base_url)
        return RunStopped(
            f"{reason}{f'; {hint}' if hint else ''}; last error: {result.error}", status=error.status
        )

    async def _answer(
        self, session: aiohttp.ClientSession, item: Item
    ) -> tuple[ItemResult, AttemptError | None]:
        """One item with retries: the response of the first good attempt, or the last error (also returned,
        for the failure budget)."""
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
                return self._failure(item, error, latency, attempt), error
            except RetryableError as error:
                latency = time.monotonic() - started
                if attempt == max_attempts:
                    return self._failure(item, error, latency, attempt), error
                await self._back_off(item, attempt, error)
            else:
                latency = time.monotonic() - started
                return ItemResult(item.question_id, text, None, latency, attempt), None
        raise AssertionError("unreachable: the loop returns on the last attempt")

    async def _attempt(self, session: aiohttp.ClientSession, payload: bytes) -> str:
        """One HTTP request under a total deadline, classified into text, RetryableError or FinalError.

        Every text taken from the server (the answer, an error body, an exception's message) is redacted
        here, whole, before it is cut to length or put in a message.
        """
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
            detail = clip(self._scrub(f"{type(error).__name__}: {error}"), ERROR_BODY_CHARS)
            raise ConnectionFailed(f"connection error: {detail}") from error
        if 200 <= status < 300:
            return parse_completion(body, self._scrub)
        excerpt = clip(self._scrub(body.decode("utf-8", "replace")), ERROR_BODY_CHARS)
        message = f"HTTP {status} from {self.settings.url}: {excerpt}"
        if status in RETRYABLE_STATUS or status >= 500:
            raise RetryableError(message, parse_retry_after(retry_after), status=status)
        raise FinalError(message, status=status)

    async def _wait_for_shared_pause(self) -> None:
        """Hold back while a server-requested pause lasts (another worker may extend it meanwhile)."""
        while (delay := self._resume_at - time.monotonic()) > 0:
            await asyncio.sleep(delay)

    async def _back_off(self, item: Item, attempt: int, error: RetryableError) -> None:
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
            error,  # redacted when it was raised
            delay,
        )
        await asyncio.sleep(delay)

    def _failure(self, item: Item, error: AttemptError, latency: float, attempts: int) -> ItemResult:
        """The result of an item that failed for good; its message was redacted when it was raised."""
        text = f"{error} (after {attempts} attempt{'s' if attempts != 1 else ''})"
        # A warning, not an error: the item is recorded and retried by the next run, and whether failures
        # fail the job is decided once, at the end (max_failed_items, or the failure budget's summary).
        log.warning("%s: item %s failed: %s", self.model_name, item.question_id, text)
        return ItemResult(item.question_id, None, text, latency, attempts)
