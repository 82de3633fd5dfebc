"""Temporaries of a killed run are removed at the next start; nothing else is."""

from __future__ import annotations

import tempfile

import pytest

from spinebench.cleanup import remove_stale_temporaries, stale_temporaries

pytestmark = pytest.mark.faults  # the fault-injection suite (pytest -m faults)


def test_only_writer_temporaries_are_removed(tmp_path):
    results = tmp_path / "results"
    (results / "images" / "rsna").mkdir(parents=True)
    kept = [
        results / "images" / "rsna" / "000.parquet",
        results / ".gitkeep",
        results / "notes.tmp",  # not a writer's name: no leading dot
        results / ".hidden",
    ]
    for path in kept:
        path.write_bytes(b"x")
    _, file_tmp = tempfile.mkstemp(dir=results / "images" / "rsna", prefix=".001.parquet.", suffix=".tmp")
    staging = tempfile.mkdtemp(dir=tmp_path, prefix=".rsna.", suffix=".tmp")
    (tmp_path / staging / "half-written.zip").write_bytes(b"PK")
    retired = tempfile.mkdtemp(dir=results, prefix=".report.", suffix=".old")

    removed = remove_stale_temporaries([results, tmp_path / "missing", tmp_path])
    assert sorted(map(str, removed)) == sorted([file_tmp, staging, retired])
    assert all(path.exists() for path in kept)
    assert stale_temporaries([tmp_path]) == []
