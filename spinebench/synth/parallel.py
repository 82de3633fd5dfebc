"""Ordered parallel map for the image-heavy generators (results come back in input order, so the
archives do not depend on the number of workers).

The map runs its own small pool of forked workers rather than `multiprocessing.Pool`, because a Pool whose
worker is killed (the OOM killer, a stray `kill`) replaces the worker and loses its task: the caller then
waits forever for a result that never comes. Here the parent always knows which item each worker holds, so
a worker that dies fails the map at once with a `WorkerDiedError` naming that item and how the worker died.
"""

from __future__ import annotations

import multiprocessing
import signal
import traceback
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

# Below this many items per worker a pool costs more than it saves.
MIN_ITEMS_PER_WORKER = 8
# Items handed out ahead of the oldest unfinished one, per worker: enough to keep workers busy, few
# enough that finished results (image bytes) never pile up in memory while an earlier one is computed.
TASKS_IN_FLIGHT_PER_WORKER = 4
# How much of an item's repr an error message quotes (a study plan's repr runs to kilobytes).
ITEM_REPR_CHARS = 300
# Seconds a worker gets to exit after being told to stop before it is terminated.
STOP_GRACE_S = 5.0


class WorkerDiedError(RuntimeError):
    """A worker process ended (killed by a signal, or exited) while it was computing an item."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker (the `__cause__` of the exception re-raised)."""

    def __str__(self) -> str:
        return self.args[0]


def ordered_map(function: Callable, items: Iterable, workers: int | None) -> Iterator:
    """Yield function(item) for every item, in order, using up to `workers` processes.

    An exception raised by `function` is re-raised here (with the worker's traceback as its cause); a
    worker that dies raises WorkerDiedError naming the item. The output does not depend on `workers`.

    Workers are forked: Snakemake `script:` files run their body at import, so a "spawn" child that
    re-imports the main module would start the job again. Forking also hands every worker `function`
    and `items` as they are, so only item indices and results cross the pipes. Where fork is unavailable
    the map is serial.
    """
    items = list(items)
    workers = max(1, int(workers or 1))
    serial = workers == 1 or len(items) < workers * MIN_ITEMS_PER_WORKER
    if serial or "fork" not in multiprocessing.get_all_start_methods():
        yield from map(function, items)
        return
    pool = _ForkedPool(function, items, workers)
    try:
        yield from pool.results()
    finally:
        pool.stop()


class _Worker:
    """One forked worker process and the parent's end of its pipe; `index` is the item it holds, if any."""

    def __init__(self, process: multiprocessing.Process, connection: Connection) -> None:
        self.process = process
        self.connection = connection
        self.index: int | None = None


class _ForkedPool:
    """Forked workers fed one item index at a time, so the parent knows which item each one computes."""

    def __init__(self, function: Callable, items: list, workers: int) -> None:
        self.items = items
        self.window = workers * TASKS_IN_FLIGHT_PER_WORKER
        self.workers: list[_Worker] = []
        try:
            for _ in range(workers):
                self.workers.append(self._start_worker(function))
        except BaseException:  # e.g. fork fails for lack of memory: stop the workers already started
            self.stop()
            raise

    def _start_worker(self, function: Callable) -> _Worker:
        context = multiprocessing.get_context("fork")
        parent_end, child_end = context.Pipe(duplex=True)
        # The child closes every parent end it inherits, so that it sees end-of-file, and exits, when the
        # parent dies without stopping it (Snakemake cancelling a job sends SIGTERM: no cleanup runs).
        inherited = [worker.connection for worker in self.workers] + [parent_end]
        process = context.Process(
            target=_serve, args=(function, self.items, child_end, inherited), daemon=True
        )
        process.start()
        child_end.close()
        return _Worker(process, parent_end)

    def results(self) -> Iterator:
        """function(item) for every item, in order."""
        finished: dict[int, Any] = {}
        next_to_hand, next_to_yield = 0, 0
        while next_to_yield < len(self.items):
            # Hand out items while they stay within the window ahead of the next one to yield.
            for worker in self.workers:
                if worker.index is None and next_to_hand < min(len(self.items), next_to_yield + self.window):
                    self._hand(worker, next_to_hand)
                    next_to_hand += 1
            if next_to_yield in finished:
                yield finished.pop(next_to_yield)
                next_to_yield += 1
                continue
            busy = [worker for worker in self.workers if worker.index is not None]
            ready = wait([w.connection for w in busy] + [w.process.sentinel for w in busy])
            for worker in busy:
                if worker.connection in ready or worker.process.sentinel in ready:
                    index, result = self._collect(worker)
                    finished[index] = result

    def _hand(self, worker: _Worker, index: int) -> None:
        """Send `worker` the index of its next item (a worker that died while idle fails here)."""
        worker.index = index
        try:
            worker.connection.send(index)
        except OSError:
            raise WorkerDiedError(self._death_message(worker, index)) from None

    def _collect(self, worker: _Worker) -> tuple[int, Any]:
        """(index, result) that `worker` sent; raises what the item raised, or WorkerDiedError."""
        index = worker.index
        try:
            # A worker that died may still have sent its result first: poll before blaming it.
            if not worker.connection.poll():
                raise EOFError
            succeeded, payload = worker.connection.recv()
        except (EOFError, OSError):
            raise WorkerDiedError(self._death_message(worker, index)) from None
        worker.index = None
        if not succeeded:
            error, remote_traceback = payload
            error.add_note(f"raised in a worker process by item {index + 1} of {len(self.items)}")
            raise error from RemoteTraceback(remote_traceback)
        return index, payload

    def _death_message(self, worker: _Worker, index: int) -> str:
        """Which item a dead worker held, and how it died (a signal, or an exit status)."""
        worker.process.join(STOP_GRACE_S)
        code = worker.process.exitcode
        if code is not None and code < 0:
            how = f"killed by {signal.Signals(-code).name}"
            if -code == signal.SIGKILL:
                how += ", as the out-of-memory killer does"
        elif code is not None:
            how = f"exit status {code}"
        else:
            how = "its pipe closed"
        item = repr(self.items[index])
        if len(item) > ITEM_REPR_CHARS:
            item = item[:ITEM_REPR_CHARS] + "..."
        return (
            f"worker process {worker.process.pid} died ({how}) while holding item {index + 1} of "
            f"{len(self.items)}: {item}"
        )

    def stop(self) -> None:
        """Tell every worker to exit; terminate the ones that do not within STOP_GRACE_S."""
        for worker in self.workers:
            try:
                worker.connection.send(None)
            except OSError:  # a dead worker's pipe is closed
                pass
        for worker in self.workers:
            # A busy worker would finish its item before reading the stop: it is terminated instead.
            worker.process.join(0 if worker.index is not None else STOP_GRACE_S)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join()
            worker.connection.close()


def _serve(function: Callable, items: list, connection: Connection, inherited: list[Connection]) -> None:
    """A worker's loop: receive an item index, send (True, result) or (False, (exception, traceback))."""
    for parent_end in inherited:
        parent_end.close()
    while True:
        try:
            index = connection.recv()
        except EOFError:  # the parent is gone
            return
        if index is None:
            return
        try:
            reply = (True, function(items[index]))
        except Exception as error:
            reply = (False, (error, traceback.format_exc()))
        try:
            _send_reply(connection, reply)
        except OSError:  # the parent is gone
            return


def _send_reply(connection: Connection, reply: tuple) -> None:
    """Send a worker's reply; one that cannot be pickled (an odd exception or result) is sent as text."""
    try:
        connection.send(reply)
    except OSError:
        raise
    except Exception as error:  # pickling fails before anything is written
        text = traceback.format_exc()
        connection.send((False, (RuntimeError(f"the worker cannot send its reply: {error}"), text)))
