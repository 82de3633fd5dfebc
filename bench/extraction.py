"""Answer extraction on the labelled corpus: agreement and wrong letters per extraction path.

    .venv/bin/python bench/extraction.py                    # the table, then every disagreement
    .venv/bin/python bench/extraction.py --compare HEAD     # also the extractor of a git revision
    .venv/bin/python bench/extraction.py --by style         # also outcomes per response style (or lang, task)

The corpus is tests/data/extraction_corpus/ (labels by reading, see its README); the table is the one
tests/test_extraction_corpus.py checks against its targets (>= 97% agreement, <= 0.5% wrong letters).
`wrong` is a silent error (a letter the response did not commit to), `missed` a response the reader
answers and the extractor does not (the judge's work when one is configured).
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from spinebench import extract  # noqa: E402
from spinebench.extract_eval import (  # noqa: E402
    OUTCOMES,
    Outcome,
    disagreements,
    format_table,
    load_corpus,
    path_table,
    run_corpus,
)

DEFAULT_CORPUS = REPO / "tests" / "data" / "extraction_corpus"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="corpus folder")
    parser.add_argument(
        "--compare", metavar="REV", help="also run spinebench/extract.py as of this git revision"
    )
    parser.add_argument("--by", choices=("style", "lang", "task", "source"), help="outcomes per case field")
    parser.add_argument("--quiet", action="store_true", help="tables only, no list of disagreements")
    return parser.parse_args(argv)


# What the extractor of a revision is made of: the public module, the package behind it (absent before the
# split into spinebench/extraction/), and what they import from spinebench.
EXTRACTOR_FILES = (
    "spinebench/__init__.py",
    "spinebench/vocab.py",
    "spinebench/extract.py",
    "spinebench/extraction",
)


def revision_tree(revision: str) -> Path:
    """A temporary folder holding the extractor's files (`EXTRACTOR_FILES`) as of a git revision."""
    names = subprocess.run(
        ["git", "-C", str(REPO), "ls-tree", "-r", "--name-only", revision, "--", *EXTRACTOR_FILES],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    folder = Path(tempfile.mkdtemp(prefix="extract-"))
    for name in names:
        blob = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{revision}:{name}"], check=True, capture_output=True
        ).stdout
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(blob)
    return folder


def _spinebench_modules() -> dict:
    """The imported modules of the `spinebench` package, by name."""
    return {
        name: module
        for name, module in sys.modules.items()
        if name == "spinebench" or name.startswith("spinebench.")
    }


def extractor_at(revision: str):
    """`spinebench.extract` as of a git revision, imported from that revision's files.

    The working tree's spinebench modules step aside while it imports, so that the revision's
    spinebench.extraction and spinebench.vocab are the ones it uses, and come back afterwards; the loaded
    module keeps its own.
    """
    folder = str(revision_tree(revision))
    saved = _spinebench_modules()
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, folder)
    try:
        return importlib.import_module("spinebench.extract")
    finally:
        sys.path.remove(folder)
        for name in _spinebench_modules():
            del sys.modules[name]
        sys.modules.update(saved)


def by_field(outcomes: list[Outcome], field: str) -> str:
    """Cases, agreement and wrong letters per value of a case field."""
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for item in outcomes:
        groups[str(getattr(item.case, field))].append(item)
    header = f"{field:<28}{'cases':>7}" + "".join(f"{name:>8}" for name in OUTCOMES)
    lines = [header, "-" * len(header)]
    for value, items in sorted(groups.items()):
        counts = [sum(item.outcome == name for item in items) for name in OUTCOMES]
        lines.append(f"{value:<28}{len(items):>7}" + "".join(f"{count:>8}" for count in counts))
    return "\n".join(lines)


def report(title: str, module, cases, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    outcomes = run_corpus(cases, module.extract_answer)
    elapsed = time.perf_counter() - started
    print(f"== {title}: {len(cases)} cases in {elapsed:.2f} s")
    print(format_table(path_table(outcomes, module.METHODS)))
    if args.by:
        print()
        print(by_field(outcomes, args.by))
    if not args.quiet:
        print()
        print("\n".join(disagreements(outcomes)) or "(no disagreement)")
    print()


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    cases = load_corpus(args.corpus)
    if args.compare:
        report(f"spinebench/extract.py at {args.compare}", extractor_at(args.compare), cases, args)
    report("spinebench/extract.py (working tree)", extract, cases, args)


if __name__ == "__main__":
    main(sys.argv[1:])
