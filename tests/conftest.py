"""Shared fixtures: tiny synthetic archives of all four sources, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from spinebench.synth import write_source
from spinebench.vocab import SOURCES

# Small enough to build in a few seconds, large enough that every synthetic quirk and decoy is present
# (CSXA's JSON-less case is the fourth, the first five CSXA cases cover all five curvature classes).
TINY_COUNTS = {"rsna_images": 12, "vindr_images": 12, "buu_cases": 4, "csxa_images": 6}
TINY_SEED = 20251014


@pytest.fixture(scope="session")
def tiny_counts() -> dict[str, int]:
    """The counts the `synthetic_archives` were written with (a copy: tests may not change them)."""
    return dict(TINY_COUNTS)


@pytest.fixture(scope="session")
def synthetic_archives(tmp_path_factory) -> dict[str, Path]:
    """source -> folder holding its synthetic archive (the layout of resources/synthetic/{source}),
    written with TINY_COUNTS, TINY_SEED and decoys. Treat as read-only: it is shared by the session."""
    root = tmp_path_factory.mktemp("synthetic")
    folders = {}
    for source in SOURCES:
        folders[source] = root / source
        write_source(source, folders[source], TINY_COUNTS, TINY_SEED, decoys=True)
    return folders
