"""Hash-based per-item randomness.

Every random choice in the benchmark (library sampling, paraphrase choice, option order, tie-breaks) is
derived from a blake2b digest of (seed, item keys..., purpose) rather than from a shared random stream, so
that an item's choice does not depend on which other items exist or on the order they are processed in,
and never on Python's salted `hash()`.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

# 16 bytes: enough entropy for a PCG64 seed and negligible collision risk for tie-breaking.
DIGEST_SIZE = 16


def _canonical_keys(seed: int, keys: tuple) -> bytes:
    """Unambiguous byte encoding of (seed, *keys): a compact JSON array of ints and strings.

    JSON quoting keeps ("a,b",) and ("a", "b") apart, which a plain separator join would not.
    """
    for key in (seed, *keys):
        # bool is an int subclass whose JSON form differs from its int value: refuse it to keep keys obvious.
        if isinstance(key, bool) or not isinstance(key, int | str):
            raise TypeError(f"seeding keys must be int or str, got {key!r} ({type(key).__name__})")
    return json.dumps([seed, *keys], ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def item_digest(seed: int, *keys: int | str) -> bytes:
    """The blake2b digest of (seed, *keys): the root of every per-item random choice."""
    return hashlib.blake2b(_canonical_keys(seed, keys), digest_size=DIGEST_SIZE).digest()


def item_int(seed: int, *keys: int | str) -> int:
    """A 64-bit unsigned integer derived from (seed, *keys); use as a sort key for seeded rankings."""
    return int.from_bytes(item_digest(seed, *keys)[:8], "big")


def item_fraction(seed: int, *keys: int | str) -> float:
    """A float in [0, 1) derived from (seed, *keys) (53 bits, like `random.random()`)."""
    return (item_int(seed, *keys) >> 11) / float(1 << 53)


def item_rng(seed: int, *keys: int | str) -> np.random.Generator:
    """A NumPy generator seeded from (seed, *keys), for draws that need many numbers (e.g. resampling).

    NumPy does not promise identical Generator streams across versions, so choices that end up in the
    released benchmark tables use the pure-hash helpers below instead.
    """
    return np.random.default_rng(int.from_bytes(item_digest(seed, *keys), "big"))


def item_choice(seed: int, count: int, *keys: int | str) -> int:
    """An index in [0, count) derived from (seed, *keys), independent of any library's RNG algorithm.

    The modulo bias of a 64-bit value over a small count (below 2**-50) is immaterial.
    """
    if count <= 0:
        raise ValueError(f"cannot choose among {count} items")
    return item_int(seed, *keys) % count


def item_permutation(seed: int, count: int, *keys: int | str) -> list[int]:
    """A permutation of range(count) derived from (seed, *keys): positions sorted by their own hash."""
    return sorted(range(count), key=lambda position: (item_int(seed, *keys, position), position))
