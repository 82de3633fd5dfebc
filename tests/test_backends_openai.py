"""The OpenAI-compatible backend against a real HTTP server on loopback that injects faults."""

from __future__ import annotations

import email.utils
import io
import logging
import random
import time
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from spinebench.backends import BackendError, Item, make_backend
from spinebench.backends.openai_compat import (
    ERROR_BODY_CHARS,
    RetryableError,
    backoff_delay,
    parse_completion,
    parse_retry_after,
)
from spinebench.backends.redaction import redact
from tests import fault_server
from tests.fault_server import FaultServer

API_KEY = "sk-test-3f9a1c77-never-print-me"
KEY_ENV = "SPINEBENCH_TEST_API_KEY"


def png_bytes(shade: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (shade, shade, shade)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = png_bytes()


def items(*names: str) -> list[Item]:
    options = {
        "A": "Healthy",
        "B": "Osteophytes",
        "C": "Spondylolisthesis",
        "D": "Cervical kyphosis",
        "E": "Vertebral collapse",
    }
    return [
        Item(name, f"img-{name}", "diagnosis", f"Question about [[{name}]]", options, PNG) for name in names
    ]


def backend(server: FaultServer, **overrides):
    settings = {
        "backend": "openai",
        "base_url": server.base_url,
        "model": "test-vlm",
        "api_key_env": KEY_ENV,
        "concurrency": 2,
        "timeout_s": 5,
        "max_retries": 3,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
    }
    settings.update(overrides)
    return make_backend("test-model", settings)


def run(backend_, batch):
    results = []
    backend_.run(batch, results.append)
    return {result.question_id: result for result in results}


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv(KEY_ENV, API_KEY)
    with FaultServer(latency_s=0.0) as running:
        yield running


def test_request_carries_png_data_url_and_env_key_which_never_leaks(server, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    server.plan("q1", fault_server.status(500), fault_server.ok())  # a retry, so the retry log path runs too
    results = run(backend(server), items("q1", "q2"))
    assert {qid: r.response for qid, r in results.items()} == {
        "q1": fault_server.default_reply("q1"),
        "q2": fault_server.default_reply("q2"),
    }
    assert results["q1"].attempts == 2 and results["q2"].attempts == 1
    for record in server.requests():
        assert record.authorization == f"Bearer {API_KEY}"
        assert record.has_png_data_url
        assert record.model == "test-vlm"
    assert API_KEY not in caplog.text
    assert all(API_KEY not in repr(result) for result in results.values())


def test_echoed_keys_are_redacted_in_results_and_logs_before_any_cut(server, caplog):
    """The backend itself lets no part of the key out: not in answers, errors (whose bodies are cut at
    ERROR_BODY_CHARS, here right inside the echoed key), retry warnings nor failure lines."""
    caplog.set_level(logging.DEBUG)
    inside_cut = ERROR_BODY_CHARS - 12  # the key starts 12 characters before the cut
    server.plan("q1", fault_server.echo(200, "You sent {auth}. My final option: [A]"))
    server.plan("q2", fault_server.echo(404, "unknown key {key}", key_at=inside_cut))
    server.plan(
        "q3", fault_server.echo(500, "echo {key}", key_at=inside_cut), fault_server.echo(200, "{key}")
    )
    # Only 5 characters of the key inside the cut: too few to be recognised as a part of it once cut off.
    server.plan("q4", fault_server.echo(400, "raw {key}", key_at=ERROR_BODY_CHARS - 5))
    results = run(backend(server, max_retries=1), items("q1", "q2", "q3", "q4"))
    assert results["q1"].response == "You sent Bearer [REDACTED]. My final option: [A]"
    assert results["q2"].error.startswith("HTTP 404") and results["q3"].response == "[REDACTED]"
    assert "raw [REDA" in results["q4"].error and API_KEY[:5] not in results["q4"].error
    assert "attempt 1 failed (HTTP 500" in caplog.text and "item q2 failed: HTTP 404" in caplog.text
    texts = [caplog.text, *(r.response or r.error for r in results.values())]
    parts = [API_KEY[start : start + 8] for start in range(len(API_KEY) - 7)]  # every 8 characters of it
    assert not [(part, text) for part in parts for text in texts if part in text]


def test_concurrency_is_bounded_and_used():
    with FaultServer(latency_s=0.05) as server:
        names = [f"q{i:02d}" for i in range(24)]
        started = time.monotonic()
        results = run(backend(server, concurrency=4, api_key_env=None), items(*names))
        elapsed = time.monotonic() - started
    assert sorted(results) == names and all(r.ok for r in results.values())
    assert server.max_in_flight == 4
    assert all(record.authorization is None for record in server.requests())
    # 24 items, 4 at a time, 50 ms each: 0.3 s ideal; serial would take 1.2 s.
    assert elapsed < 1.1


def test_429_with_retry_after_seconds_waits_at_least_that_long(server):
    server.plan("q1", fault_server.status(429, retry_after=1), fault_server.ok())
    results = run(backend(server), items("q1"))
    assert results["q1"].ok and results["q1"].attempts == 2
    first, second = server.requests("q1")
    assert second.started - first.ended >= 0.95


def test_retry_after_pauses_every_worker(server):
    # One worker is told to wait 1 s; the other worker must hold back too rather than hammer the server.
    # A request the other worker sent before the client read the 429 cannot be recalled; on a loaded
    # 2-core CI machine that window reaches a few hundred ms, so only starts after 0.25 s count.
    server.plan("q0", fault_server.status(429, retry_after=1), fault_server.ok())
    run(backend(server, concurrency=2), items(*[f"q{i}" for i in range(6)]))
    told_to_wait = server.requests("q0")[0].ended
    starts = sorted(r.started - told_to_wait for r in server.requests() if r.started > told_to_wait)
    assert len(starts) >= 5
    assert not [start for start in starts if 0.25 < start < 0.95], starts


def test_retry_after_http_date_is_honoured(server):
    # HTTP dates have whole seconds: 2 s ahead means a wait of more than 1 s.
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    server.plan("q1", fault_server.status(503, retry_after=when), fault_server.ok())
    results = run(backend(server), items("q1"))
    assert results["q1"].ok and results["q1"].attempts == 2
    first, second = server.requests("q1")
    assert 0.9 <= second.started - first.ended <= 3.0


def test_5xx_backoff_is_exponential_with_bounded_jitter(server):
    server.plan(
        "q1", fault_server.status(500), fault_server.status(502), fault_server.status(503), fault_server.ok()
    )
    results = run(backend(server, backoff_base_s=0.1, backoff_max_s=10), items("q1"))
    assert results["q1"].ok and results["q1"].attempts == 4
    requests = server.requests("q1")
    gaps = [later.started - earlier.ended for earlier, later in zip(requests, requests[1:], strict=False)]
    # Equal jitter: retry n waits between half and all of 0.1 * 2**(n-1) seconds (plus scheduling slack).
    for attempt, gap in enumerate(gaps, start=1):
        ceiling = 0.1 * 2 ** (attempt - 1)
        assert ceiling / 2 - 0.01 <= gap <= ceiling + 0.25, (attempt, gap)


def test_backoff_is_capped(server):
    server.plan("q1", *[fault_server.status(500)] * 3, fault_server.ok())
    started = time.monotonic()
    results = run(backend(server, backoff_base_s=1.0, backoff_max_s=0.05), items("q1"))
    assert results["q1"].ok and time.monotonic() - started < 0.6


def test_gives_up_after_max_retries_with_the_last_error(server):
    server.plan("q1", *[fault_server.status(500)] * 10)
    results = run(backend(server, max_retries=2), items("q1", "q2"))
    failed = results["q1"]
    assert not failed.ok and failed.response is None and failed.attempts == 3
    assert "HTTP 500" in failed.error and "after 3 attempts" in failed.error
    assert len(server.requests("q1")) == 3
    assert results["q2"].ok


@pytest.mark.parametrize("code", [400, 401, 404, 422])
def test_other_4xx_is_not_retried(server, code):
    server.plan("q1", fault_server.status(code), fault_server.ok())
    results = run(backend(server), items("q1"))
    assert not results["q1"].ok and results["q1"].attempts == 1
    assert f"HTTP {code}" in results["q1"].error
    assert len(server.requests("q1")) == 1


def test_slow_response_times_out_and_is_retried(server):
    server.plan("q1", fault_server.slow(3.0), fault_server.ok())
    started = time.monotonic()
    results = run(backend(server, timeout_s=0.3), items("q1"))
    assert results["q1"].ok and results["q1"].attempts == 2
    assert time.monotonic() - started < 2.0


def test_timeout_error_is_recorded_after_retries(server):
    server.plan("q1", fault_server.slow(3.0))
    results = run(backend(server, timeout_s=0.2, max_retries=0), items("q1"))
    assert "timed out after 0.2 s" in results["q1"].error


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (fault_server.malformed(), "malformed JSON"),
        (fault_server.no_choices(), "no choices"),
        (fault_server.drop(), "connection error"),
    ],
)
def test_bad_bodies_and_dropped_connections_are_retried(server, fault, message):
    server.plan("q1", fault, fault_server.ok())
    server.plan("q2", fault)
    results = run(backend(server, max_retries=1), items("q1"))
    assert results["q1"].ok and results["q1"].attempts == 2
    failed = run(backend(server, max_retries=0), items("q2"))["q2"]
    assert message in failed.error and failed.attempts == 1


def test_unset_key_variable_is_an_error_naming_it(server, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(BackendError, match=KEY_ENV):
        run(backend(server), items("q1"))
    assert server.requests() == []


def test_a_bad_item_fails_the_run_with_its_own_error(server):
    def broken():
        yield from items("q1")
        raise ValueError("image img-q2 is missing")

    with pytest.raises(ValueError, match="img-q2"):
        run(backend(server), broken())


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"base_url": "http://x/v1", "model": "m", "concurency": 4}, "unknown setting.*concurency"),
        ({"model": "m"}, "missing required setting.*base_url"),
        ({"base_url": "ftp://x", "model": "m"}, "base_url must start"),
        ({"base_url": "http://x/v1", "model": "m", "concurrency": 0}, "concurrency"),
        ({"base_url": "http://x/v1", "model": "m", "max_retries": -1}, "max_retries"),
    ],
)
def test_settings_are_validated(settings, message):
    with pytest.raises(BackendError, match=message):
        make_backend("bad-model", {"backend": "openai", **settings})


def test_fingerprint_ignores_operational_settings():
    base = {"backend": "openai", "base_url": "http://x/v1", "model": "m", "temperature": 0}
    plain = make_backend("m", base).fingerprint_data()
    assert (
        make_backend("m", {**base, "concurrency": 64, "timeout_s": 9, "api_key_env": "K"}).fingerprint_data()
        == plain
    )
    assert make_backend("m", {**base, "temperature": 0.7}).fingerprint_data() != plain


def test_parse_retry_after_forms():
    now = datetime(2025, 10, 14, 12, 0, 0, tzinfo=UTC)
    later = email.utils.format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("1.5", now) == 1.5
    assert parse_retry_after(later, now) == 30.0
    assert parse_retry_after(email.utils.format_datetime(now - timedelta(seconds=5), usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_backoff_delay_bounds():
    rng = random.Random(3)
    for attempt in range(1, 8):
        ceiling = min(2.0, 0.25 * 2 ** (attempt - 1))
        for _ in range(50):
            assert ceiling / 2 <= backoff_delay(attempt, 0.25, 2.0, rng) <= ceiling


def test_parse_completion_variants():
    def body(message):
        import json

        return json.dumps({"choices": [{"message": message}]}).encode()

    assert parse_completion(body({"content": "My final option: [B]"})) == "My final option: [B]"
    assert (
        parse_completion(body({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}))
        == "ab"
    )
    assert parse_completion(body({"content": None, "refusal": "I cannot help"})) == "I cannot help"
    assert parse_completion(body({"content": None})) == ""
    with pytest.raises(RetryableError, match="no choices; error"):
        parse_completion(b'{"error": {"message": "overloaded"}}')
    with pytest.raises(RetryableError, match="not an object"):
        parse_completion(b"[1, 2]")


def test_redact_removes_the_key():
    assert redact(f"echo: Bearer {API_KEY}", API_KEY) == "echo: Bearer [REDACTED]"
    assert redact("nothing here", None) == "nothing here"
