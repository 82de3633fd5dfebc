"""Measuring answer extraction against a labelled corpus of responses (tests/data/extraction_corpus/).

Each corpus case holds a response and the letters a careful reader takes from it (`label`, None when the
response commits to nothing). Running an extractor over the corpus gives, per case, one of three outcomes:

- `agree`: the extractor gives exactly the label (None for None counts);
- `wrong`: the extractor gives letters that are not the label, a *silent error*: no judge ever sees it,
  and the answer is scored as if the model had said it;
- `missed`: the extractor gives nothing where the reader sees an answer (a judge, when configured, gets
  a second look).

`path_table` counts outcomes per extraction path, so that a change to one stage shows where it helps or
hurts. tests/test_extraction_corpus.py holds the targets; bench/extraction.py prints the table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import yaml

from spinebench.extract import Extraction, extract_answer

OUTCOMES: tuple[str, ...] = ("agree", "wrong", "missed")


class CorpusCase(NamedTuple):
    """One labelled response (fields as in the corpus README)."""

    id: str
    task: str
    options: Mapping[str, str]
    text: str | None
    label: tuple[str, ...] | None
    source: str
    style: str
    lang: str


class Outcome(NamedTuple):
    """What an extractor made of one case."""

    case: CorpusCase
    extraction: Extraction
    outcome: str  # one of OUTCOMES


class PathRow(NamedTuple):
    """Outcome counts of the cases one extraction path decided (`path` "all" for the whole corpus)."""

    path: str
    cases: int
    agree: int
    wrong: int
    missed: int


def load_corpus(folder: str | Path) -> list[CorpusCase]:
    """Every case of `folder`/part*.yaml, with its option set from `folder`/options.yaml resolved."""
    folder = Path(folder)
    option_sets = yaml.safe_load((folder / "options.yaml").read_text(encoding="utf-8"))
    cases = []
    for part in sorted(folder.glob("part*.yaml")):
        for raw in yaml.safe_load(part.read_text(encoding="utf-8")):
            label = raw["label"]
            cases.append(
                CorpusCase(
                    id=raw["id"],
                    task=raw["task"],
                    options={str(letter): str(text) for letter, text in option_sets[raw["options"]].items()},
                    text=raw["text"],
                    label=tuple(label) if label else None,
                    source=raw["source"],
                    style=raw["style"],
                    lang=raw.get("lang", "en"),
                )
            )
    return cases


def classify(label: tuple[str, ...] | None, letters: tuple[str, ...] | None) -> str:
    """`agree`, `wrong` (letters that are not the label) or `missed` (no letters where the label has some)."""
    if letters == label:
        return "agree"
    return "missed" if letters is None else "wrong"


def run_corpus(
    cases: Iterable[CorpusCase],
    extractor: Callable[[str | None, str, Mapping[str, str]], Extraction] = extract_answer,
) -> list[Outcome]:
    """The extractor's outcome on every case."""
    outcomes = []
    for case in cases:
        extraction = extractor(case.text, case.task, case.options)
        outcomes.append(Outcome(case, extraction, classify(case.label, extraction.letters)))
    return outcomes


def path_table(outcomes: Sequence[Outcome], paths: Sequence[str]) -> list[PathRow]:
    """One row per path in `paths` order (paths that decided no case included), then the row `all`."""
    rows = []
    for path in [*paths, "all"]:
        chosen = [item for item in outcomes if path == "all" or item.extraction.method == path]
        counts = {name: sum(item.outcome == name for item in chosen) for name in OUTCOMES}
        rows.append(PathRow(path, len(chosen), counts["agree"], counts["wrong"], counts["missed"]))
    return rows


def format_table(rows: Sequence[PathRow]) -> str:
    """A fixed-width text table: per path, cases, agreement and wrong letters, as counts and percentages.

    Percentages within a row are of that row's cases; `wrong % corpus` is of the whole corpus, the figure
    the wrong-letter target applies to.
    """
    total = rows[-1].cases or 1
    header = f"{'path':<16}{'cases':>7}{'agree':>7}{'agree %':>9}{'wrong':>7}{'wrong %':>9}"
    header += f"{'wrong % corpus':>16}{'missed':>8}"
    lines = [header, "-" * len(header)]
    for row in rows:
        share = row.cases or 1
        lines.append(
            f"{row.path:<16}{row.cases:>7}{row.agree:>7}{100 * row.agree / share:>9.1f}"
            f"{row.wrong:>7}{100 * row.wrong / share:>9.1f}{100 * row.wrong / total:>16.2f}{row.missed:>8}"
        )
    return "\n".join(lines)


def disagreements(outcomes: Sequence[Outcome]) -> list[str]:
    """One line per case the extractor got wrong or missed: id, label, extraction, path."""
    lines = []
    for item in outcomes:
        if item.outcome != "agree":
            label = ",".join(item.case.label) if item.case.label else "none"
            got = ",".join(item.extraction.letters) if item.extraction.letters else "none"
            method = item.extraction.method
            lines.append(f"{item.outcome:<7} {item.case.id:<44} label {label:<10} got {got:<10} {method}")
    return lines
