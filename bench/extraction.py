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
import importlib.util
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


def extractor_at(revision: str):
    """The `extract` module as of a git revision, loaded from its blob (it imports only spinebench.vocab)."""
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{revision}:spinebench/extract.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    folder = Path(tempfile.mkdtemp(prefix="extract-"))
    path = folder / f"extract_{revision.replace('/', '_')}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
