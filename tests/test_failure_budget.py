"""A run whose requests keep failing stops early with one summary, keeping what finished.

Against the loopback fault server, through the runner the predict script uses (run_predictions, then
finalize on the rerun): a refused key, a server that fails after a few answers, retryable failures, a
server that is down, and a judge that is refused.
"""

from __future__ import annotations

import logging
import time

import pytest

from spinebench.backends import BackendError, make_backend
from spinebench.backends.openai_compat import (
    STOP_EARLY_ITEMS,
    AttemptError,
    ConnectionFailed,
    FailureStreak,
)
from spinebench.benchmark_images import ShardImages
from spinebench.finalize import Judge, finalize
from spinebench.io import read_table
from spinebench.journal import PredictionError, judge_cache_path_for, read_records
from spinebench.predict import model_fingerprint, run_predictions
from tests import fault_server
from tests.fault_server import FaultServer
from tests.test_predict_resume import make_benchmark, openai_settings

pytestmark = pytest.mark.faults  # the fault-injection suite (pytest -m faults)


def predict(paths: dict, settings: dict, jsonl):
    """What scripts/predict.py runs for one model and the diagnosis task (without finalizing)."""
    backend = make_backend("test-model", settings)
    return run_predictions(
        read_table(paths["questions"]),
        ShardImages(read_table(paths["catalog"]), paths["shards"]),
        backend,
        jsonl,
        model_fingerprint(backend),
        task="diagnosis",
        definitions=False,
    )


def records_by_outcome(jsonl) -> tuple[set[str], set[str]]:
    records = read_records(jsonl)
    return (
        {r["question_id"] for r in records if r["error"] is None},
        {r["question_id"] for r in records if r["error"] is not None},
    )


def test_a_refused_key_stops_after_a_few_items_with_one_summary(tmp_path, caplog):
    count, concurrency = 100, 4
    paths = make_benchmark(tmp_path, count)
    jsonl = tmp_path / "out" / "diagnosis.jsonl"
    caplog.set_level(logging.INFO)
    with FaultServer() as server:
        server.plan_every_request(*[fault_server.status(401)] * 1000)
        settings = openai_settings(server, concurrency=concurrency, max_retries=4)
        with pytest.raises(PredictionError) as raised:
            predict(paths, settings, jsonl)
        refused = len(server.requests())

        # Only the items in flight when the third refusal came back were asked, not 100 (or 500 with retries).
        assert STOP_EARLY_ITEMS <= refused <= STOP_EARLY_ITEMS + concurrency
        summary = str(raised.value)
        assert "\n" not in summary
        assert "stopped early: 3 items in a row failed with HTTP 401" in summary
        assert "check api_key_env" in summary and "last error: HTTP 401 from" in summary
        finished, failed = records_by_outcome(jsonl)
        assert finished == set() and len(failed) >= STOP_EARLY_ITEMS
        assert f"0 finished, {len(failed)} failed and {count - len(failed)} were not tried" in summary
        assert f"a rerun asks only the other {count}" in summary
        # No ERROR line per item: the failures are warnings, and the summary is the job's one error.
        assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
        assert len([r for r in caplog.records if "failed: HTTP 401" in r.getMessage()]) == len(failed)

        # Once the key is fixed, the rerun asks every item exactly once.
        server.clear_plans()
        server.reset_counters()
        summary = predict(paths, settings, jsonl)
        assert (summary.succeeded, summary.failed) == (count, 0)
        assert sorted(server.request_counts().values()) == [1] * count


def test_answers_before_the_failures_are_kept_and_not_asked_again(tmp_path):
    count = 100
    paths = make_benchmark(tmp_path, count)
    jsonl = tmp_path / "out" / "diagnosis.jsonl"
    with FaultServer() as server:
        # Five answers, then the key is revoked (or the credit runs out).
        server.plan_every_request(*[fault_server.ok()] * 5, *[fault_server.status(403)] * 1000)
        settings = openai_settings(server, concurrency=4)
        with pytest.raises(PredictionError, match="3 items in a row failed with HTTP 403") as raised:
            predict(paths, settings, jsonl)
        finished, failed = records_by_outcome(jsonl)
        assert len(finished) == 5
        not_tried = count - 5 - len(failed)
        assert f"5 finished, {len(failed)} failed and {not_tried} were not tried" in str(raised.value)
        assert "the 5 answered items are kept" in str(raised.value)

        server.clear_plans()
        server.reset_counters()
        predict(paths, settings, jsonl)
        assert set(server.request_counts()) == {f"dx-rsna-img{i:03d}" for i in range(count)} - finished
        frame = finalize_diagnosis(paths, jsonl, settings)
        assert len(frame) == count and frame["error"].isna().all()


def test_retryable_failures_stop_after_max_consecutive_failures_items(tmp_path):
    paths = make_benchmark(tmp_path, 30)
    jsonl = tmp_path / "out" / "diagnosis.jsonl"
    with FaultServer() as server:
        server.plan_every_request(*[fault_server.status(500)] * 1000)
        settings = openai_settings(server, concurrency=2, max_retries=1, max_consecutive_failures=5)
        with pytest.raises(PredictionError) as raised:
            predict(paths, settings, jsonl)
        # Five items through both attempts, plus at most the other worker's item in flight.
        assert 10 <= len(server.requests()) <= 12
    summary = str(raised.value)
    assert "5 items in a row failed after all retries (max_consecutive_failures: 5)" in summary
    assert "last error: HTTP 500" in summary and "(after 2 attempts)" in summary


def test_a_server_that_is_down_stops_the_run(tmp_path):
    paths = make_benchmark(tmp_path, 40)
    jsonl = tmp_path / "out" / "diagnosis.jsonl"
    base_url = fault_server.unused_base_url()
    settings = {
        "backend": "openai",
        "base_url": base_url,
        "model": "test-vlm",
        "concurrency": 2,
        "max_retries": 2,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.02,
        "max_consecutive_failures": 4,
    }
    started = time.monotonic()
    with pytest.raises(PredictionError) as raised:
        predict(paths, settings, jsonl)
    assert time.monotonic() - started < 10
    summary = str(raised.value)
    assert "4 items in a row failed after all retries" in summary
    assert f"is the server at {base_url.rstrip('/')} up?" in summary
    assert "last error: connection error: ClientConnectorError" in summary
    _, failed = records_by_outcome(jsonl)
    assert 4 <= len(failed) <= 5 and f"{40 - len(failed)} were not tried" in summary


def test_failures_between_answers_do_not_stop_the_run(tmp_path):
    paths = make_benchmark(tmp_path, 8)
    jsonl = tmp_path / "out" / "diagnosis.jsonl"
    with FaultServer() as server:
        for index in range(0, 8, 2):  # every other item is refused; one worker keeps the order
            server.plan(f"dx-rsna-img{index:03d}", fault_server.status(404))
        settings = openai_settings(server, concurrency=1, max_consecutive_failures=2)
        summary = predict(paths, settings, jsonl)
    assert (summary.succeeded, summary.failed) == (4, 4)


def test_the_streak_counts_items_in_a_row_and_stops_early_on_one_refusing_status():
    def refused(status):
        return AttemptError(f"HTTP {status}", status)

    streak = FailureStreak(limit=10)
    reasons = [streak.add(error) for error in [refused(401), refused(404), refused(401), refused(401)]]
    assert reasons == [None, None, None, None]  # the statuses differ: no early stop yet
    assert streak.add(refused(401)) == "3 items in a row failed with HTTP 401"
    streak = FailureStreak(limit=10)  # any failures count towards the general budget, mixed or not
    reasons = [streak.add(error) for error in [ConnectionFailed("connection error"), refused(400)] * 5]
    assert reasons[:9] == [None] * 9
    assert reasons[9] == "10 items in a row failed after all retries (max_consecutive_failures: 10)"
    streak = FailureStreak(limit=3)
    assert [streak.add(refused(500)) for _ in range(2)] == [None, None]
    assert streak.add(None) is None  # an answer ends the streak
    assert [streak.add(refused(500)) for _ in range(3)][-1] == (
        "3 items in a row failed after all retries (max_consecutive_failures: 3)"
    )
    assert FailureStreak(limit=1).add(refused(401)) == "1 items in a row failed with HTTP 401"


def test_the_setting_is_validated_and_does_not_change_the_fingerprint():
    base = {"backend": "openai", "base_url": "http://x/v1", "model": "m"}
    assert make_backend("m", base).settings.max_consecutive_failures == 10
    assert make_backend("m", {**base, "max_consecutive_failures": 1}).settings.max_consecutive_failures == 1
    with pytest.raises(BackendError, match="max_consecutive_failures"):
        make_backend("m", {**base, "max_consecutive_failures": 0})
    with pytest.raises(BackendError, match="max_consecutive_failures"):
        make_backend("m", {**base, "max_consecutive_failures": 2.5})
    changed = make_backend("m", {**base, "max_consecutive_failures": 3})
    assert model_fingerprint(changed) == model_fingerprint(make_backend("m", base))


def test_a_refused_judge_leaves_responses_unjudged_with_one_warning(tmp_path, caplog):
    paths = make_benchmark(tmp_path, 12)
    jsonl = tmp_path / "out" / "diagnosis.jsonl"
    with FaultServer(reply=lambda marker, body: f"Hard to say for {marker}.") as server:
        settings = openai_settings(server)
        predict(paths, settings, jsonl)
        server.plan_every_request(*[fault_server.status(401)] * 1000)
        judge_backend = make_backend("judge-model", openai_settings(server, model="judge-llm"))
        judge = Judge(judge_backend, model_fingerprint(judge_backend), judge_cache_path_for(jsonl))
        caplog.set_level(logging.INFO)
        server.reset_counters()
        frame = finalize_diagnosis(paths, jsonl, settings, judge)
        assert len(server.requests()) < 12
    assert set(frame["extraction"]) == {"none"} and frame["answer"].isna().all()
    stopped = [r for r in caplog.records if "stopped early" in r.getMessage()]
    assert len(stopped) == 1 and stopped[0].levelno == logging.WARNING
    assert "HTTP 401" in stopped[0].getMessage()


def finalize_diagnosis(paths: dict, jsonl, settings: dict, judge: Judge | None = None):
    """The finalized diagnosis predictions of the test model (`settings`), optionally judged."""
    return finalize(
        read_table(paths["questions"]),
        jsonl,
        model_fingerprint(make_backend("test-model", settings)),
        task="diagnosis",
        definitions=False,
        judge=judge,
    )
