"""`spinebench-store`: size and hit rates of the content-addressed store, and pruning it.

    spinebench-store stats                 # entries, bytes, referenced entries and hit rate per kind
    spinebench-store stats --json
    spinebench-store prune                 # delete entries no existing output references (older than 1 h)
    spinebench-store prune --min-age-hours 0

The store is found as the workflow finds it: --dir, else $SPINEBENCH_CACHE, else `cache.dir` of the
params.yaml in the current folder, else .cache/spinebench.

Prune keeps every entry that an existing output of *any* build using this store references (each render,
embed and synthesize job records its output's entries), so pruning a shared store never removes what
another clone's current outputs were built from; entries younger than --min-age-hours are kept too, as a
build still running may not have recorded them yet.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import yaml

from spinebench.store import Store, prune, store_location, store_stats


def configured_dir(params_path: Path = Path("params.yaml")) -> str | None:
    """`cache.dir` of the params file in the current folder, if there is one."""
    if not params_path.is_file():
        return None
    params = yaml.safe_load(params_path.read_text(encoding="utf-8")) or {}
    return (params.get("cache") or {}).get("dir")


def _size(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def print_stats(store: Store, as_json: bool) -> None:
    stats = store_stats(store)
    if as_json:
        document = {kind: {**asdict(entry), "hit_rate": entry.hit_rate} for kind, entry in stats.items()}
        print(json.dumps({"store": str(store.root), "kinds": document}, indent=2, sort_keys=True))
        return
    print(f"store {store.root}")
    print(f"{'kind':<16}{'entries':>9}{'size':>12}{'referenced':>12}{'hits':>9}{'misses':>9}{'hit rate':>10}")
    for kind, entry in sorted(stats.items()):
        rate = "-" if entry.hit_rate is None else f"{entry.hit_rate:.1%}"
        print(
            f"{kind:<16}{entry.entries:>9}{_size(entry.bytes):>12}{entry.referenced:>12}"
            f"{entry.hits:>9}{entry.misses:>9}{rate:>10}"
        )
    total = sum(entry.bytes for entry in stats.values())
    print(f"{'total':<16}{sum(e.entries for e in stats.values()):>9}{_size(total):>12}")
    print("hits and misses: the last job that wrote each existing output")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="spinebench-store", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", help="store folder (default: $SPINEBENCH_CACHE, params cache.dir, ...)")
    commands = parser.add_subparsers(dest="command", required=True)
    stats_parser = commands.add_parser("stats", help="size and hit rates per kind of entry")
    stats_parser.add_argument("--json", action="store_true", help="print JSON")
    prune_parser = commands.add_parser("prune", help="delete entries no existing output references")
    prune_parser.add_argument("--min-age-hours", type=float, default=1.0, help="keep younger entries")
    args = parser.parse_args(argv)

    root = Path(args.dir).resolve() if args.dir else store_location(configured_dir())
    if not root.is_dir():
        parser.error(f"no store at {root}")
    store = Store(root)
    if args.command == "stats":
        print_stats(store, args.json)
    else:
        report = prune(store, min_age_s=args.min_age_hours * 3600)
        print(
            f"pruned {report.deleted} entries ({_size(report.deleted_bytes)}) and {report.temporaries} "
            f"abandoned temporary files; kept {report.kept} referenced and {report.too_young} recent entries"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
