"""PNG bytes of benchmark images, read from the rendered shards results/images/{source}/{shard}.parquet.

The catalog's `source` and `shard` columns say which shard holds an image. Readers load only the shards
that hold requested images, and only their image_id and png columns: at full scale the images weigh
gigabytes, so predict jobs, the report and the exports read them a shard at a time.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq


class MissingImageError(ValueError):
    """An image the catalog does not place, or whose shard is not given or lacks it."""


def shard_key(path: str | os.PathLike) -> tuple[str, str]:
    """(source, shard) of an image shard path results/images/{source}/{shard}.parquet."""
    path = Path(path)
    return path.parent.name, path.stem


class ShardImages:
    """Image lookup over the catalog and the image shard files given to a job."""

    def __init__(self, catalog: pd.DataFrame, shard_paths: Sequence[str | os.PathLike]) -> None:
        self._shard_of = {
            str(image_id): (str(source), str(shard))
            for image_id, source, shard in zip(
                catalog["image_id"], catalog["source"], catalog["shard"], strict=True
            )
        }
        self._paths = {shard_key(path): Path(path) for path in shard_paths}

    def shard_of(self, image_id: str) -> tuple[str, str]:
        """(source, shard) holding the image; an error naming the image when the catalog lacks it."""
        try:
            return self._shard_of[image_id]
        except KeyError:
            raise MissingImageError(f"image {image_id} is not in the catalog") from None

    def load(self, image_ids: Sequence[str]) -> dict[str, bytes]:
        """image_id -> PNG bytes for the requested images."""
        images: dict[str, bytes] = {}
        for _, pngs in self.iter_shards(image_ids):
            images.update(pngs)
        return images

    def iter_shards(self, image_ids: Sequence[str]) -> Iterator[tuple[tuple[str, str], dict[str, bytes]]]:
        """((source, shard), image_id -> PNG bytes) for the requested images, one shard at a time in
        (source, shard) order: only one shard's images are held at once."""
        by_shard: dict[tuple[str, str], set[str]] = defaultdict(set)
        for image_id in image_ids:
            by_shard[self.shard_of(image_id)].add(image_id)
        for key, wanted in sorted(by_shard.items()):
            yield key, self._read_shard(key, wanted)

    def _read_shard(self, key: tuple[str, str], wanted: set[str]) -> dict[str, bytes]:
        path = self._paths.get(key)
        if path is None:
            raise MissingImageError(
                f"image {min(wanted)} is in shard {key[0]}/{key[1]}, which is not among the image inputs"
            )
        table = pq.read_table(path, columns=["image_id", "png"], filters=[("image_id", "in", sorted(wanted))])
        images = dict(zip(table.column("image_id").to_pylist(), table.column("png").to_pylist(), strict=True))
        absent = sorted(wanted - images.keys())
        if absent:
            raise MissingImageError(f"image {absent[0]} is missing from its shard {path}")
        return images
