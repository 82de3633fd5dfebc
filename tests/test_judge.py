"""The judge in finalize: which rows it reads, what its verdicts do, its cache and its audit column.

A scripted judge backend stands in for a model; one test runs a real `transformers` model from a local
folder (the tiny random LLaVA of test_transformers_backend) as the judge, to show that any configured
backend can judge.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import pytest

from spinebench.backends.base import Backend, Item, ItemResult, ResultSink
from spinebench.extract import JUDGED_METHODS, judge_prompt
from spinebench.finalize import PREDICTIONS_SCHEMA, Judge, JudgeVerdict, finalize
from spinebench.journal import RecordWriter, judge_cache_path_for, read_records
from spinebench.predict import plan_items

OPTIONS = ["Disc space narrowing", "Foraminal stenosis", "Spondylolisthesis", "Osteophytes", "Healthy"]

# question id -> (the model's response, what extraction makes of it)
RESPONSES = {
    "dx-a-final": ("The slip is clear.\nMy final option: [C]", "final_phrase"),
    "dx-b-low": ("There is no slip. The image shows disc space narrowing at L5-S1.", "low_confidence"),
    "dx-c-none": ("The findings are subtle and I would rather not commit.", "none"),
    "dx-d-low-rejected": ("There is no slip. The image shows osteophytes at L3.", "low_confidence"),
    "dx-e-low-failing": ("Spurs are absent. The image shows foraminal stenosis at L4-L5.", "low_confidence"),
}


class ScriptedJudge(Backend):
    """A judge that answers from a script keyed by a word of the response; counts what it is asked."""

    backend_name = "scripted"
    needs_images = False

    def __init__(self, script: dict[str, str | None]) -> None:
        super().__init__("scripted-judge")
        self.script = script
        self.asked: list[str] = []

    def fingerprint_data(self) -> dict:
        return {"script": sorted(self.script.items(), key=str)}

    def run(self, items: Iterable[Item], on_result: ResultSink) -> None:
        for item in items:
            assert item.image_png is None  # the judge reads text only
            self.asked.append(item.prompt)
            reply = next((text for word, text in self.script.items() if word in item.prompt), None)
            if reply is None:
                on_result(ItemResult(item.question_id, None, "judge failed", 0.01, 1))
            else:
                on_result(ItemResult(item.question_id, reply, None, 0.01, 1))


def questions_frame() -> pd.DataFrame:
    ids = sorted(RESPONSES)
    return pd.DataFrame(
        {
            "question_id": ids,
            "image_id": [f"img-{question_id}" for question_id in ids],
            "question": ["Which spinal condition is shown in this image?"] * len(ids),
            **{
                f"option_{letter}": [option] * len(ids)
                for letter, option in zip("abcde", OPTIONS, strict=True)
            },
        }
    )


def write_working_file(tmp_path, questions: pd.DataFrame) -> tuple:
    """The JSONL working file of a finished run whose responses are RESPONSES."""
    jsonl = tmp_path / "diagnosis.jsonl"
    with RecordWriter(jsonl) as writer:
        for entry in plan_items(questions, "diagnosis", False, "model-fp"):
            writer.append(
                {
                    "question_id": entry.question_id,
                    "fingerprint": entry.fingerprint,
                    "response": RESPONSES[entry.question_id][0],
                    "error": None,
                    "latency_s": 0.5,
                    "attempts": 1,
                }
            )
    return jsonl, judge_cache_path_for(tmp_path / "diagnosis.parquet")


def run_finalize(questions, jsonl, judge: Judge | None) -> pd.DataFrame:
    frame = finalize(questions, jsonl, "model-fp", task="diagnosis", definitions=False, judge=judge)
    return frame.set_index("question_id")


SCRIPT = {
    "disc space narrowing at L5-S1": "My final option: [A]",
    "rather not commit": "My final option: [NONE]",
    "osteophytes at L3": "My final option: [NONE]",
    # "foraminal stenosis at L4-L5" is not scripted: the judge fails on it
}


def test_without_a_judge_every_path_is_recorded_and_nothing_is_judged(tmp_path):
    questions = questions_frame()
    jsonl, _ = write_working_file(tmp_path, questions)
    frame = run_finalize(questions, jsonl, None)
    assert frame["extraction"].to_dict() == {qid: method for qid, (_, method) in RESPONSES.items()}
    assert frame.loc["dx-b-low", "answer"] == "A"
    assert frame["judge_response"].isna().all()
    assert list(frame.reset_index().columns) == PREDICTIONS_SCHEMA.names


def test_judge_reads_none_and_low_confidence_rows_and_its_replies_are_kept(tmp_path):
    questions = questions_frame()
    jsonl, cache = write_working_file(tmp_path, questions)
    backend = ScriptedJudge(SCRIPT)
    frame = run_finalize(questions, jsonl, Judge(backend, "judge-fp", cache))

    judged = [qid for qid, (_, method) in RESPONSES.items() if method in JUDGED_METHODS]
    assert len(backend.asked) == len(judged)
    assert not any("My final option: [C]" in prompt for prompt in backend.asked)  # final phrases stand

    assert frame.loc["dx-a-final", ["answer", "extraction"]].tolist() == ["C", "final_phrase"]
    assert pd.isna(frame.loc["dx-a-final", "judge_response"])
    # The judge confirms a low-confidence reading: its answer, path `judge`, its reply for the audit.
    assert frame.loc["dx-b-low", ["answer", "extraction", "judge_response"]].tolist() == [
        "A",
        "judge",
        "My final option: [A]",
    ]
    # The judge finds no answer: none, with the reply kept, also over a low-confidence reading.
    for qid in ("dx-c-none", "dx-d-low-rejected"):
        assert pd.isna(frame.loc[qid, "answer"]) and frame.loc[qid, "extraction"] == "none"
        assert frame.loc[qid, "judge_response"] == "My final option: [NONE]"
    # The judge failed: the rules' reading stands and no reply is recorded.
    assert frame.loc["dx-e-low-failing", ["answer", "extraction"]].tolist() == ["B", "low_confidence"]
    assert pd.isna(frame.loc["dx-e-low-failing", "judge_response"])


def test_judge_replies_are_cached_and_failures_retried(tmp_path):
    questions = questions_frame()
    jsonl, cache = write_working_file(tmp_path, questions)
    first = run_finalize(questions, jsonl, Judge(ScriptedJudge(SCRIPT), "judge-fp", cache))
    again_backend = ScriptedJudge(SCRIPT)
    again = run_finalize(questions, jsonl, Judge(again_backend, "judge-fp", cache))
    assert len(again_backend.asked) == 1  # only the failed one is asked again
    assert "foraminal stenosis at L4-L5" in again_backend.asked[0]
    pd.testing.assert_frame_equal(first.drop(columns="latency_s"), again.drop(columns="latency_s"))
    cached_keys = {record["question_id"] for record in read_records(cache)}
    assert len(cached_keys) == 4  # one entry per distinct prompt


def test_judge_verdict_none_needs_an_explicit_none():
    assert JudgeVerdict(None, "My final option: [NONE]").says_none
    assert not JudgeVerdict(None, "I cannot tell.").says_none
    assert not JudgeVerdict(None, None).says_none
    assert not JudgeVerdict(("A",), "My final option: [A]").says_none


def test_a_local_transformers_model_can_judge(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from spinebench.backends import make_backend
    from spinebench.predict import model_fingerprint
    from tests.test_transformers_backend import build_tiny_llava

    model_dir = tmp_path / "tiny-judge"
    build_tiny_llava(model_dir)
    backend = make_backend(
        "local-judge", {"backend": "transformers", "path": str(model_dir), "max_new_tokens": 4}
    )
    questions = questions_frame()
    jsonl, cache = write_working_file(tmp_path, questions)
    frame = run_finalize(questions, jsonl, Judge(backend, model_fingerprint(backend), cache))
    backend.close()
    judged = [qid for qid, (_, method) in RESPONSES.items() if method in JUDGED_METHODS]
    # A random model's reply is no verdict, but it was asked, answered and cached for every judged row.
    assert frame.loc[judged, "judge_response"].map(lambda reply: isinstance(reply, str)).all()
    assert frame.loc[["dx-a-final"], "judge_response"].isna().all()
    assert {record["question_id"] for record in read_records(cache)} == {
        _cache_key(model_fingerprint(backend), RESPONSES[qid][0]) for qid in judged
    }


def _cache_key(fingerprint: str, response: str) -> str:
    from spinebench.predict import _digest

    options = dict(zip("ABCDE", OPTIONS, strict=True))
    return _digest(fingerprint, judge_prompt(response, "diagnosis", options))
