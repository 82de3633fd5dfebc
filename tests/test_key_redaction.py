"""API keys never reach a written file: the redactor itself, and the whole predict job against a loopback
server that echoes the Authorization header in error bodies (around the 300-character cut) and in answers.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from spinebench.backends.openai_compat import ERROR_BODY_CHARS, RetryableError, parse_completion
from spinebench.backends.redaction import (
    MIN_FRAGMENT_CHARS,
    REDACTED,
    Redactor,
    clip,
    redact,
    redacting_logs,
)
from spinebench.io import read_table
from spinebench.journal import jsonl_path_for, judge_cache_path_for, read_records
from tests import fault_server
from tests.fault_server import FaultServer
from tests.test_predict_resume import make_benchmark, run_predict_script, script_inputs

pytestmark = pytest.mark.faults  # the fault-injection suite (pytest -m faults)

MODEL_KEY = "sk-proj-Zq81cVx0-model-key-9d7e55aa31"
JUDGE_KEY = "sk-judge-4b2f0c11e9a8-another-secret"


def fragments(text: str, key: str) -> list[str]:
    """Every part of `key` of MIN_FRAGMENT_CHARS or more characters that `text` contains (maximal ones
    are implied: any longer part contains one of these)."""
    return sorted(
        {
            key[start : start + MIN_FRAGMENT_CHARS]
            for start in range(len(key) - MIN_FRAGMENT_CHARS + 1)
            if key[start : start + MIN_FRAGMENT_CHARS] in text
        }
    )


# --- the redactor -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {MODEL_KEY}",
        f"header {MODEL_KEY} and again {MODEL_KEY}",
        f"cut by the server: {MODEL_KEY[:MIN_FRAGMENT_CHARS]}",
        f"cut by the server: {MODEL_KEY[:20]}... and its end: {MODEL_KEY[-12:]}",
        f"inside a word: abc{MODEL_KEY[5:19]}xyz",
        f'{{"auth": "{MODEL_KEY}"}}',
    ],
)
def test_the_key_and_every_long_enough_part_of_it_are_removed(text):
    clean = redact(text, MODEL_KEY)
    assert fragments(clean, MODEL_KEY) == [] and REDACTED in clean
    assert redact(clean, MODEL_KEY) == clean  # redacting twice changes nothing


def test_bearer_values_are_removed_whatever_the_token_and_json_stays_intact():
    # A token this process does not know (a proxy's), and a start of the key too short for the windows.
    text = '{"headers": {"authorization": "Bearer other-token.x_y=", "raw": "bearer sk-pr"}}'
    assert Redactor()(text) == (
        '{"headers": {"authorization": "Bearer [REDACTED]", "raw": "bearer [REDACTED]"}}'
    )


def test_text_without_the_key_is_unchanged_and_placeholder_keys_are_not_secrets():
    answer = "The L4/L5 disc shows osteophytes.\nMy final option: [B]"
    assert redact(answer, MODEL_KEY) == answer
    # A local server's placeholder key (vLLM's EMPTY) is no secret: answers mentioning the word stay whole.
    assert redact("The canal is not EMPTY.", "EMPTY") == "The canal is not EMPTY."
    assert not Redactor(["EMPTY", None, ""])


def test_redacting_before_the_cut_leaves_no_part_of_a_key_at_any_cut():
    for key_at in range(250, 310):
        body = "x" * key_at + MODEL_KEY + " tail"
        for limit in (ERROR_BODY_CHARS, key_at + 3, key_at + MIN_FRAGMENT_CHARS, key_at + 20):
            assert fragments(clip(redact(body, MODEL_KEY), limit), MODEL_KEY) == [], (key_at, limit)
    # Why parts matter: after a cut, a search for the whole key finds nothing, yet 12 characters remain.
    cut = ("x" * (ERROR_BODY_CHARS - 12) + MODEL_KEY)[:ERROR_BODY_CHARS]
    assert MODEL_KEY not in cut and fragments(cut, MODEL_KEY)


def test_parse_completion_redacts_answers_and_quoted_bodies_before_cutting():
    scrub = Redactor([MODEL_KEY])
    echoed = json.dumps({"choices": [{"message": {"content": f"Your key is {MODEL_KEY}. [A]"}}]}).encode()
    assert parse_completion(echoed, scrub) == f"Your key is {REDACTED}. [A]"
    malformed = ("{" + "y" * 110 + MODEL_KEY).encode()  # the key straddles the 120-character quote
    with pytest.raises(RetryableError) as raised:
        parse_completion(malformed, scrub)
    assert fragments(str(raised.value), MODEL_KEY) == []
    no_choices = json.dumps({"error": {"message": "z" * 280 + MODEL_KEY}}).encode()
    with pytest.raises(RetryableError) as raised:
        parse_completion(no_choices, scrub)
    assert fragments(str(raised.value), MODEL_KEY) == []


def test_the_log_filter_redacts_messages_arguments_and_tracebacks_of_every_logger():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    library_log = logging.getLogger("some.library")
    try:
        with redacting_logs(Redactor([MODEL_KEY])):
            library_log.warning("request headers: %s", {"Authorization": f"Bearer {MODEL_KEY}"})
            try:
                raise ValueError(f"server said: {MODEL_KEY[:15]}")
            except ValueError:
                library_log.exception("call failed")
        library_log.warning("after the run: %s", "unchanged")
    finally:
        root.removeHandler(handler)
    written = stream.getvalue()
    assert "Bearer [REDACTED]" in written and "ValueError: server said: [REDACTED]" in written
    assert fragments(written, MODEL_KEY) == []
    assert "after the run: unchanged" in written
    assert handler.filters == []  # the filter is gone once the run is over


# --- the predict job end to end ---------------------------------------------------------------------


def written_text(path: Path) -> str:
    """Everything a written file says: a Parquet table's cells, any other file's text."""
    if path.suffix == ".parquet":
        return read_table(path).to_csv(index=False)  # bytes cells (image shards) as their repr
    return path.read_bytes().decode("utf-8", "replace")


def test_no_key_reaches_any_file_the_predict_job_writes(tmp_path, monkeypatch):
    """Echoes at every offset around the 300-character cut, parts of the key cut by the server, retried
    and final errors, answers that quote the header, and a judge that does too: neither key, nor any part of
    8 characters or more, is in the predictions table, the working file, the judge cache or the job log."""
    monkeypatch.setenv("MODEL_KEY", MODEL_KEY)
    monkeypatch.setenv("JUDGE_KEY", JUDGE_KEY)
    count = 40
    paths = make_benchmark(tmp_path, count)
    inputs = script_inputs(tmp_path, paths)
    ids = [f"dx-rsna-img{i:03d}" for i in range(count)]
    # The error message quotes the body from its start, so a key starting at body offset 300 - k straddles
    # the cut with k characters inside it.
    straddling = list(range(ERROR_BODY_CHARS - len(MODEL_KEY) - 2, ERROR_BODY_CHARS + 2, 2))
    cases = {
        qid: fault_server.echo(400, "invalid header: {auth}", key_at=at)
        for qid, at in zip(ids, straddling, strict=False)
    }
    rest = ids[len(straddling) :]
    cases |= {
        # Parts of the key that the server itself cut, quoted without the Bearer scheme.
        rest[0]: fault_server.echo(401, "bad key {key}...", keep=MIN_FRAGMENT_CHARS),
        rest[1]: fault_server.echo(401, "bad key {key}...", keep=21, key_at=ERROR_BODY_CHARS - 10),
        # Answers quoting the header, whole or cut, which are stored whole.
        rest[2]: fault_server.echo(200, "You sent {auth}\nMy final option: [A]"),
        rest[3]: fault_server.echo(200, "Key: {key}\nMy final option: [B]", keep=17, key_at=1000),
        # Read by the judge: the stored answer carries a marker the judge's request is matched by.
        rest[4]: fault_server.echo(200, "I was sent {auth} and cannot tell [[judge-me]]"),
    }
    with FaultServer() as server:
        server.plan(rest[5], fault_server.echo(503, "overloaded; you sent {auth}"), fault_server.ok())
        for qid, fault in cases.items():
            server.plan(qid, fault)
        server.plan("judge-me", fault_server.echo(200, "Seen {auth}. My final option: [C]"))
        settings = {
            "backend": "openai",
            "base_url": server.base_url,
            "model": "test-vlm",
            "api_key_env": "MODEL_KEY",
            "concurrency": 4,
            "max_retries": 1,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.02,
            "max_consecutive_failures": 100,  # the echoing errors come in a row; this test wants every one
        }
        judge = {**settings, "model": "judge-llm", "api_key_env": "JUDGE_KEY"}
        output = run_predict_script(
            tmp_path, inputs, "echo-model", settings, split="full", judge=judge, max_failed_items=count
        )
        requests = server.requests()

    # The test did what it means to: both keys were sent, and echoed at the cut and in answers.
    assert {r.authorization for r in requests} == {f"Bearer {MODEL_KEY}", f"Bearer {JUDGE_KEY}"}
    frame = read_table(output).set_index("question_id")
    assert frame.loc[ids[: len(straddling)], "error"].str.startswith("HTTP 400").all()
    assert frame.loc[rest[2], "response"].startswith(f"You sent Bearer {REDACTED}")
    assert frame.loc[rest[3], ["answer", "extraction"]].tolist() == ["B", "final_phrase"]
    assert frame.loc[rest[4], ["answer", "extraction"]].tolist() == ["C", "judge"]
    assert frame.loc[rest[5], "attempts"] == 2 and frame["error"].notna().sum() == len(straddling) + 2

    log_path = tmp_path / "logs" / "echo-model.log"
    written = [output, jsonl_path_for(output), judge_cache_path_for(output), log_path]
    assert "retrying" in log_path.read_text()  # the retried echo was logged
    assert len(read_records(judge_cache_path_for(output))) == 1
    for path in written:
        text = written_text(path)
        assert fragments(text, MODEL_KEY) == [] and fragments(text, JUDGE_KEY) == [], path
    for path in sorted(tmp_path.rglob("*")):  # nothing else written under the job's folders either
        if path.is_file() and path.suffix in {".parquet", ".jsonl", ".log"}:
            assert fragments(written_text(path), MODEL_KEY) == [], path


def test_a_key_already_in_a_working_file_is_removed_by_the_next_run(tmp_path, monkeypatch):
    """Records written before the fix keep the key; the next run scrubs them instead of reusing them."""
    monkeypatch.setenv("MODEL_KEY", MODEL_KEY)
    paths = make_benchmark(tmp_path, 4)
    inputs = script_inputs(tmp_path, paths)
    with FaultServer() as server:
        settings = {
            "backend": "openai",
            "base_url": server.base_url,
            "model": "m",
            "api_key_env": "MODEL_KEY",
        }
        output = run_predict_script(tmp_path, inputs, "old-model", settings, split="full")
        jsonl = jsonl_path_for(output)
        leaked = [
            {**record, "response": f"echo {MODEL_KEY[:30]}\n{record['response']}"}
            for record in read_records(jsonl)
        ]
        jsonl.write_text("".join(json.dumps(record) + "\n" for record in leaked))
        server.reset_counters()
        run_predict_script(tmp_path, inputs, "old-model", settings, split="full")
        assert server.requests() == []  # the answers are reused, only their text is cleaned
    for path in (jsonl, output):
        text = written_text(path)
        assert fragments(text, MODEL_KEY) == [] and "echo [REDACTED]" in text, path
