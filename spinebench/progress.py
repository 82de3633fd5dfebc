"""Progress of a long job in its log: done/total, items/s, ETA and failures so far, at a steady interval.

A render, embed or predict job over thousands of items would otherwise log a line when it starts and one
when it ends; on a cluster its log is the only place to watch it (`tail -f logs/predict/{model}/{task}.log`).
tqdm does the counting, the rate and the ETA; its lines go to the job's logger instead of a terminal.
"""

from __future__ import annotations

import logging
import os

from tqdm import tqdm

# Seconds between two progress lines; SPINEBENCH_PROGRESS_S overrides it (it changes no output).
DEFAULT_INTERVAL_S = 30.0
INTERVAL_VARIABLE = "SPINEBENCH_PROGRESS_S"


def progress_interval() -> float:
    """The interval between progress lines, from the environment or the default."""
    value = os.environ.get(INTERVAL_VARIABLE)
    return float(value) if value else DEFAULT_INTERVAL_S


class _LogStream:
    """A file-like sink that turns tqdm's carriage-return refreshes into log lines."""

    def __init__(self, logger: logging.Logger, label: str) -> None:
        self.logger, self.label = logger, label

    def write(self, text: str) -> None:
        line = text.strip("\r\n ")
        if line:
            self.logger.info("%s: %s", self.label, line)

    def flush(self) -> None:
        pass


class LogProgress:
    """Counts finished items (and failures) of one job and logs its progress every `interval_s` seconds.

    Use as a context manager; `advance(failed=...)` after each item. The first line is logged at the start
    and the last one (the totals) when the block ends.
    """

    def __init__(
        self,
        logger: logging.Logger,
        label: str,
        total: int,
        unit: str = "items",
        interval_s: float | None = None,
    ) -> None:
        interval = progress_interval() if interval_s is None else interval_s
        self.failures = 0
        self._bar = tqdm(
            total=total,
            file=_LogStream(logger, label),
            mininterval=interval,
            miniters=1,
            ascii=True,
            unit=f" {unit}",
            bar_format="{n_fmt}/{total_fmt} done, {rate_fmt}, ETA {remaining}{postfix}",
            postfix="failures so far: 0",
        )

    def advance(self, count: int = 1, failed: bool = False) -> None:
        """Count `count` finished items (failed ones too, when `failed`)."""
        if failed:
            self.failures += count
            self._bar.set_postfix_str(f"failures so far: {self.failures}", refresh=False)
        self._bar.update(count)

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc_info) -> None:
        self._bar.close()
