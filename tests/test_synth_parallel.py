"""The synthetic generators' ordered parallel map: input order, errors re-raised, dead workers reported."""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from spinebench.synth.parallel import MIN_ITEMS_PER_WORKER, WorkerDiedError, ordered_map

pytestmark = pytest.mark.faults  # the fault-injection suite (pytest -m faults)

ITEMS = list(range(40))  # enough for 2 and 3 workers to fork (MIN_ITEMS_PER_WORKER each)


@contextmanager
def deadline(seconds: int):
    """Fail the test, rather than hang the suite, if the block runs longer than `seconds`."""

    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: the map hangs")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def square_after_a_while(item: int) -> tuple[int, int]:
    """item squared and the computing process; early items take longest, so they finish out of order."""
    time.sleep(0.0005 * (len(ITEMS) - item))
    return item * item, os.getpid()


def killed_on(victim: int, item: int, slow: int | None = None) -> int:
    """`item`, but the worker SIGKILLs itself on `victim` (as the OOM killer would); `slow` takes 3 s."""
    if item == victim:
        os.kill(os.getpid(), signal.SIGKILL)
    if item == slow:
        time.sleep(3.0)
    return item


def fails_on_seven(item: int) -> int:
    if item == 7:
        raise ValueError(f"item {item} is bad")
    return item


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_results_come_back_in_input_order_whatever_the_workers(workers):
    with deadline(60):
        results = list(ordered_map(square_after_a_while, ITEMS, workers))
    assert [value for value, _ in results] == [item * item for item in ITEMS]
    processes = {pid for _, pid in results}
    assert len(processes) == workers and (workers == 1) == (processes == {os.getpid()})
    assert not multiprocessing.active_children()


def test_a_killed_worker_fails_the_map_promptly_naming_its_item():
    started = time.perf_counter()
    with deadline(30), pytest.raises(WorkerDiedError) as raised:
        list(ordered_map(functools.partial(killed_on, 13), ITEMS, 2))
    assert time.perf_counter() - started < 5.0
    message = str(raised.value)
    assert "died (killed by SIGKILL" in message and "item 14 of 40: 13" in message
    assert not multiprocessing.active_children()  # the other worker is stopped too


def test_the_dead_workers_item_is_named_not_the_one_awaited():
    """Item 1 takes 3 s on one worker while the other dies on item 4: the map fails at once and names
    item 4, although it is still waiting for item 1's result."""
    started = time.perf_counter()
    with deadline(30), pytest.raises(WorkerDiedError, match="item 5 of 40: 4$"):
        list(ordered_map(functools.partial(killed_on, 4, slow=1), ITEMS, 2))
    assert time.perf_counter() - started < 2.5


def test_an_exception_in_a_worker_is_raised_with_its_item_and_traceback():
    with deadline(30), pytest.raises(ValueError, match="item 7 is bad") as raised:
        list(ordered_map(fails_on_seven, ITEMS, 2))
    assert "raised in a worker process by item 8 of 40" in raised.value.__notes__
    assert "in fails_on_seven" in str(raised.value.__cause__)  # the worker's traceback
    assert not multiprocessing.active_children()


def test_stopping_early_stops_the_workers():
    with deadline(30):
        results = ordered_map(square_after_a_while, ITEMS, 2)
        assert [next(results)[0] for _ in range(3)] == [0, 1, 4]
        results.close()
    assert not multiprocessing.active_children()


def test_few_items_are_mapped_in_this_process():
    items = ITEMS[: 2 * MIN_ITEMS_PER_WORKER - 1]
    assert {pid for _, pid in ordered_map(square_after_a_while, items, 2)} == {os.getpid()}


ORPHANED_MAP = """
import multiprocessing, time
from spinebench.synth.parallel import ordered_map

def slow(item):
    time.sleep(0.2)
    return item

for item in ordered_map(slow, range(1000), 2):
    if item == 0:
        print(*(child.pid for child in multiprocessing.active_children()), flush=True)
"""


def exited(pid: int) -> bool:
    """Whether process `pid` is gone or a zombie (an orphan waits for its new parent to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_workers_exit_when_the_parent_is_killed():
    """A job killed with SIGKILL runs no cleanup: its workers see their pipe close and exit."""
    repo = Path(__file__).resolve().parents[1]
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHANED_MAP], cwd=repo, stdout=subprocess.PIPE, text=True
    )
    workers = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(workers) == 2
    parent.kill()
    parent.wait()
    started = time.perf_counter()
    while not all(exited(pid) for pid in workers) and time.perf_counter() - started < 10:
        time.sleep(0.05)
    left = [pid for pid in workers if not exited(pid)]
    for pid in left:  # leave no orphan behind when this fails
        os.kill(pid, signal.SIGKILL)
    assert not left, "workers still running 10 s after their parent was killed"
