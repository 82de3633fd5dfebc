"""Removing API keys from every string a backend lets out: responses, error messages and log lines.

A server may echo request headers back, in an error body or even in a "successful" reply (a proxy's debug
mode, a hostile or broken endpoint), so every string that leaves a backend passes through one `Redactor`
*before* it is cut to length: cutting first can leave the start of a key at the cut, which an exact
search for the whole key no longer finds. Three things are removed:

- any run of at least `MIN_FRAGMENT_CHARS` characters of a key (the whole key, or a part of it that the
  server itself cut or wrapped), found by searching every window of that length of the key;
- any `Bearer <token>` value, whatever the token (a key this process does not know, say one a proxy
  added, or a start of a key too short for the window search);
- nothing else: a key shorter than `MIN_FRAGMENT_CHARS` is a placeholder (vLLM's `EMPTY`, `dummy`), not a
  secret, and replacing every occurrence of a short word would corrupt model answers.

Log lines are covered twice: the backends redact what they log themselves, and `redacting_logs` puts a
`RedactingFilter` on the root logger's handlers while a run lasts, for lines logged by libraries
(aiohttp, asyncio) or by exceptions whose text carries a server's reply.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

REDACTED = "[REDACTED]"
# Shortest part of a key that is removed wherever it appears; also the shortest key treated as a secret.
MIN_FRAGMENT_CHARS = 8
# An Authorization header value as echoed by a server: the token characters of RFC 6750 (b64token).
# "[REDACTED]" does not match (no "[" in a token), so redacting twice changes nothing.
BEARER_VALUE = re.compile(r"(?i)\b(Bearer\s+)[A-Za-z0-9._~+/=-]+")


class Redactor:
    """Callable that returns a text with the given secrets, their long-enough parts and Bearer values
    replaced by `[REDACTED]`. Secrets that are None, empty or shorter than MIN_FRAGMENT_CHARS are ignored."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        windows: set[str] = set()
        for secret in secrets:
            if secret and len(secret) >= MIN_FRAGMENT_CHARS:
                windows.update(
                    secret[start : start + MIN_FRAGMENT_CHARS]
                    for start in range(len(secret) - MIN_FRAGMENT_CHARS + 1)
                )
        self._windows = frozenset(windows)

    def __bool__(self) -> bool:
        """Whether there is a secret to look for (Bearer values are removed either way)."""
        return bool(self._windows)

    def __call__(self, text: str) -> str:
        return BEARER_VALUE.sub(rf"\1{REDACTED}", self._without_fragments(text))

    def _without_fragments(self, text: str) -> str:
        """`text` with every span covered by a window of a secret replaced, overlapping spans merged."""
        spans = sorted(_occurrences(text, self._windows))
        if not spans:
            return text
        pieces, kept_from = [], 0
        span_start, span_end = spans[0]
        for start, end in [*spans[1:], (len(text) + 1, len(text) + 1)]:
            if start <= span_end:  # overlapping or touching windows are one run of the key
                span_end = max(span_end, end)
                continue
            pieces += [text[kept_from:span_start], REDACTED]
            kept_from, span_start, span_end = span_end, start, end
        pieces.append(text[kept_from:])
        return "".join(pieces)


def _occurrences(text: str, windows: Iterable[str]) -> Iterator[tuple[int, int]]:
    """(start, end) of every occurrence of every window in `text`, overlapping ones included.

    One str.find per window (a C loop) rather than a Python loop over the text's positions: a key gives
    some 40-160 windows, while a response or an error page can run to megabytes.
    """
    for window in windows:
        start = text.find(window)
        while start != -1:
            yield start, start + len(window)
            start = text.find(window, start + 1)


def redact(text: str, secret: str | None) -> str:
    """`text` without `secret` (or any part of it of MIN_FRAGMENT_CHARS or more) and Bearer values."""
    return Redactor([secret])(text)


def clip(text: str, limit: int) -> str:
    """An already redacted `text` on one line (whitespace runs collapsed) and cut to `limit` characters.

    Only ever called on redacted text: cutting cannot create a key fragment, only shorten one that the
    redaction has already replaced.
    """
    return " ".join(text.split())[:limit]


class RedactingFilter(logging.Filter):
    """A handler filter that redacts each record's message and traceback text before it is written."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redactor(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            # Formatter.format uses exc_text when set; formatting it here lets the traceback be redacted.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor(record.stack_info)
        return True


@contextmanager
def redacting_logs(redactor: Redactor) -> Iterator[None]:
    """While the block runs, redact every record reaching a handler of the root logger.

    The filter goes on the handlers, not on loggers: a logger's filters see only records logged on that
    very logger, while every record of the job's loggers (aiohttp's included) propagates to the root's
    handlers (the job log file, pytest's capture).
    """
    if not redactor:
        yield
        return
    log_filter = RedactingFilter(redactor)
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(log_filter)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(log_filter)
