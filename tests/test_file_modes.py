"""Outputs get the permissions the user's umask gives any new file, not mkstemp's fixed 0600."""

from __future__ import annotations

import os
import stat

import pandas as pd
import pytest

from spinebench.io import write_json, write_table
from spinebench.journal import RecordWriter, compact
from spinebench.metrics import write_csv
from spinebench.report import write_text


@pytest.fixture(params=[0o022, 0o027], ids=lambda mask: f"umask-{mask:03o}")
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def record(error: str | None) -> dict:
    return {"question_id": "q1", "fingerprint": "f", "response": "A", "error": error, "latency_s": 0.1}


def test_every_writer_follows_the_umask(umask, tmp_path):
    write_table(pd.DataFrame({"a": [1]}), tmp_path / "table.parquet")
    write_json({"a": 1}, tmp_path / "summary.json")
    write_csv(pd.DataFrame({"a": [1]}), tmp_path / "leaderboard.csv")
    write_text("<html></html>", tmp_path / "report.html")
    journal = tmp_path / "diagnosis.jsonl"
    with RecordWriter(journal) as writer:
        writer.append({**record("timeout"), "attempts": 1})
        writer.append({**record(None), "attempts": 2})
    compact(journal, [{**record("timeout"), "attempts": 1}, {**record(None), "attempts": 2}], {"q1": "f"})
    assert len(journal.read_text().splitlines()) == 1  # rewritten without the superseded error
    for name in ("table.parquet", "summary.json", "leaderboard.csv", "report.html", "diagnosis.jsonl"):
        assert mode(tmp_path / name) == 0o666 & ~umask, name
