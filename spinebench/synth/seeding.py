"""Identifiers for the synthetic sources, derived like every other random choice from
`spinebench.seeding` (a blake2b digest of the params seed and keys naming the item and purpose).

An item's ids therefore do not depend on generation order, and the same seed gives the same archive.
"""

from __future__ import annotations

from collections.abc import Callable

from spinebench.seeding import item_digest, item_int


def hex_id(seed: int, *keys: int | str) -> str:
    """A 32-character lowercase hex id (the VinDr-SpineXR id style)."""
    return item_digest(seed, *keys).hex()


def numeric_id(seed: int, low: int, high: int, *keys: int | str) -> int:
    """An integer id in [low, high) (the RSNA study/series id style)."""
    return low + item_int(seed, *keys) % (high - low)


def dicom_uid(seed: int, *keys: int | str) -> str:
    """A valid DICOM UID under the 2.25 root (UUID-derived UIDs, PS3.5 B.2), at most 64 characters."""
    return "2.25." + str(int.from_bytes(item_digest(seed, *keys), "big"))


class UniqueIds:
    """Hands out ids from a derivation function, re-deriving on the (rare) collision.

    `make(attempt)` must be deterministic in `attempt`; ids are unique within one instance.
    """

    def __init__(self) -> None:
        self._taken: set = set()

    def claim(self, make: Callable[[int], int | str]) -> int | str:
        """The first of make(0), make(1), ... not handed out before."""
        attempt = 0
        while (value := make(attempt)) in self._taken:
            attempt += 1
        self._taken.add(value)
        return value
