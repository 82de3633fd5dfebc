"""Ordered parallel map for the image-heavy generators (results come back in input order, so the
archives do not depend on the number of workers)."""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator

# Below this many items per worker a pool costs more than it saves.
MIN_ITEMS_PER_WORKER = 8
# Tasks in flight per worker: enough to keep workers busy, few enough that finished results (image
# bytes) never pile up in memory while the caller is still writing earlier ones.
TASKS_IN_FLIGHT_PER_WORKER = 4


def ordered_map(function: Callable, items: Iterable, workers: int | None) -> Iterator:
    """Yield function(item) for every item, in order, using up to `workers` processes.

    Workers are forked: Snakemake `script:` files run their body at import, so a "spawn" child that
    re-imports the main module would start the job again. Where fork is unavailable the map is serial.
    """
    items = list(items)
    workers = max(1, int(workers or 1))
    serial = workers == 1 or len(items) < workers * MIN_ITEMS_PER_WORKER
    if serial or "fork" not in multiprocessing.get_all_start_methods():
        yield from map(function, items)
        return
    window = workers * TASKS_IN_FLIGHT_PER_WORKER
    with multiprocessing.get_context("fork").Pool(processes=workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.apply_async(function, (item,)))
            if len(pending) >= window:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
