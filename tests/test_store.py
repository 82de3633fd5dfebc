"""The content-addressed store: atomic verified entries, concurrency, corruption, refs, stats and prune."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from spinebench.store import (
    HEADER,
    STORE_ENV,
    Store,
    StoreError,
    Tally,
    content_key,
    keys_by_kind,
    live_refs,
    prune,
    store_location,
    store_stats,
)

KEY = content_key("render", {"raw_sha256": "ab" * 32, "settings": {"max_side": 512}})


def test_content_key_depends_on_every_field_and_not_on_their_order():
    assert content_key("render", {"a": 1, "b": [1, 2]}) == content_key("render", {"b": [1, 2], "a": 1})
    assert content_key("render", {"a": 1}) != content_key("render", {"a": 2})
    assert content_key("render", {"a": 1}) != content_key("embedding", {"a": 1})
    assert len(KEY) == 64


def test_put_then_get_round_trips_and_counts(tmp_path):
    store = Store(tmp_path)
    tally = Tally()
    assert store.get("render", KEY, tally) is None
    store.put("render", KEY, b"payload", tally)
    assert store.get("render", KEY, tally) == b"payload"
    assert (tally.hits, tally.misses, tally.damaged) == (1, 1, 0)
    assert store.entry_path("render", KEY) == tmp_path / "objects" / "render" / KEY[:2] / KEY
    assert not list(store.temporaries())


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-1],  # truncated payload
        lambda data: data[:-1] + bytes([data[-1] ^ 1]),  # one flipped bit
        lambda data: b"",  # empty file
        lambda data: b"NOTSTORE" + data[8:],  # foreign file
    ],
)
def test_a_damaged_entry_is_never_served_and_put_replaces_it(tmp_path, damage):
    store = Store(tmp_path)
    store.put("render", KEY, b"the real payload")
    path = store.entry_path("render", KEY)
    path.write_bytes(damage(path.read_bytes()))
    tally = Tally()
    assert store.get("render", KEY, tally) is None
    assert (tally.hits, tally.misses, tally.damaged) == (0, 1, 1)
    store.put("render", KEY, b"the real payload")
    assert store.get("render", KEY) == b"the real payload"


def test_file_entries_stream_and_are_verified(tmp_path):
    store = Store(tmp_path / "store")
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(3 << 20))
    store.put_file("synthetic_file", KEY, source)
    copy = tmp_path / "out" / "copy.bin"
    assert store.get_file("synthetic_file", KEY, copy)
    assert copy.read_bytes() == source.read_bytes()
    entry = store.entry_path("synthetic_file", KEY)
    data = bytearray(entry.read_bytes())
    data[HEADER.size + 100] ^= 0xFF
    entry.write_bytes(bytes(data))
    copy.write_bytes(b"previous")
    assert not store.get_file("synthetic_file", KEY, copy)
    assert copy.read_bytes() == b"previous"  # a damaged entry never replaces the destination
    assert not store.get_file("synthetic_file", content_key("x", {}), tmp_path / "absent")


def _hammer(root: str, worker: int, rounds: int) -> None:
    """Write and read the same keys as other processes, checking every read."""
    store = Store(root)
    for round_ in range(rounds):
        key = content_key("render", {"n": round_ % 7})
        payload = (f"item {round_ % 7} " * 5000).encode()
        store.put("render", key, payload)
        got = store.get("render", key)
        assert got is None or got == payload, f"worker {worker} read a torn entry"


def test_concurrent_writers_of_the_same_keys_leave_whole_entries(tmp_path):
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_hammer, args=(str(tmp_path), n, 60)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    store = Store(tmp_path)
    for n in range(7):
        assert store.get("render", content_key("render", {"n": n})) == (f"item {n} " * 5000).encode()
    assert not list(store.temporaries())


def test_location_prefers_the_environment_then_the_param(tmp_path, monkeypatch):
    monkeypatch.delenv(STORE_ENV, raising=False)
    assert store_location(None, tmp_path) == tmp_path / ".cache" / "spinebench"
    assert store_location("shared/store", tmp_path) == tmp_path / "shared" / "store"
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "from-env"))
    assert store_location("shared/store", tmp_path) == tmp_path / "from-env"


def test_refs_keep_entries_alive_and_prune_deletes_the_rest(tmp_path):
    store = Store(tmp_path / "store")
    output = tmp_path / "results" / "images.parquet"
    output.parent.mkdir()
    output.write_bytes(b"shard")
    kept, dropped, young = (content_key("render", {"n": n}) for n in range(3))
    tally = Tally(hits=1, misses=1)
    for key in (kept, dropped, young):
        store.put("render", key, b"x" * 10)
    tally.keys.append(kept)
    store.record_refs(output, "render", tally)
    old = time.time() - 7200
    for key in (kept, dropped):
        os.utime(store.entry_path("render", key), (old, old))
    assert keys_by_kind(live_refs(store, remove_stale=False)) == {"render": {kept}}
    stats = store_stats(store)["render"]
    assert (stats.entries, stats.referenced, stats.hits, stats.misses) == (3, 1, 1, 1)
    assert stats.hit_rate == 0.5
    report = prune(store, min_age_s=3600)
    assert (report.deleted, report.kept, report.too_young) == (1, 1, 1)
    assert store.get("render", kept) == b"x" * 10 and store.get("render", dropped) is None
    # Once the output is gone its refs are stale: everything old enough goes.
    output.unlink()
    report = prune(store, min_age_s=0)
    assert report.deleted == 2 and not list(Path(store.root / "refs").glob("*.json"))


def test_unreadable_store_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot be created"):
        Store(blocker / "store")


def test_store_command_reports_and_prunes(tmp_path, capsys):
    from spinebench.store_cli import main

    store = Store(tmp_path / "store")
    output = tmp_path / "shard.parquet"
    output.write_bytes(b"shard")
    tally = Tally(hits=3, misses=1, keys=[KEY])
    store.put("render", KEY, b"kept")
    orphan = content_key("render", {"orphan": 1})
    store.put("render", orphan, b"orphan")
    store.record_refs(output, "render", tally)
    assert main(["--dir", str(store.root), "stats", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["kinds"]["render"]
    assert (report["entries"], report["referenced"], report["hit_rate"]) == (2, 1, 0.75)
    assert main(["--dir", str(store.root), "prune", "--min-age-hours", "0"]) == 0
    assert "pruned 1 entries" in capsys.readouterr().out
    assert store.get("render", KEY) == b"kept" and store.get("render", orphan) is None
    with pytest.raises(SystemExit):
        main(["--dir", str(tmp_path / "absent"), "stats"])
