"""`spinebench-score`: score predictions made elsewhere with this project's extraction and metrics, with no
workflow and no images.

    spinebench-score SpineBench/evaluation/test.json my-vlm.jsonl --format jsonl --out scores
    spinebench-score results/benchmark my-vlm.xlsx --format vlmevalkit --split full --out scores

BENCHMARK is either a JSON file in the original SpineBench release layout (all/train.json,
evaluation/test.json, or this project's spinebench_json export), or this project's results/benchmark
folder. PREDICTIONS is read by the reader of --format (spinebench.imports). Every response goes through
this project's answer extraction, and the scores are written as the workflow's score rule writes them:
`{model}.json`, `{model}.breakdown.csv` and `{model}.questions.parquet` in --out.

A question the predictions do not answer (or answer with null) is scored wrong, as an item that failed
(extraction path `error`). The original JSON layout has no SpineBench-Sub marking, so a JSON benchmark is
scored whole (split `full`): to score the Sub, give its evaluation/test.json. Where the JSON records no
source, modality or disease of an image, the breakdown shows it as `unknown`.

The bootstrap defaults are the project's (metrics.bootstrap_samples, metrics.confidence and
seeds.bootstrap of params.yaml), so that the intervals equal the workflow's on the same questions.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from spinebench.extract import extract_answer
from spinebench.finalize import PREDICTIONS_SCHEMA
from spinebench.imports import FORMATS, read_responses
from spinebench.io import read_table, write_table
from spinebench.metrics import ModelScores, score_model, write_model_scores
from spinebench.prompts import question_options
from spinebench.questions import QUESTION_COLUMNS, QUESTIONS_SCHEMA
from spinebench.splits import SPLITS
from spinebench.vocab import LETTERS, TASKS

log = logging.getLogger(__name__)

# params.yaml defaults of metrics.bootstrap_samples, metrics.confidence and seeds.bootstrap.
DEFAULT_BOOTSTRAP_SAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_BOOTSTRAP_SEED = 20251014

# What the breakdown shows for an image attribute the benchmark JSON does not record.
UNKNOWN = "unknown"
CATALOG_COLUMNS = ["image_id", "source", "modality", "disease"]
# Types of the tables written for the metrics' SQL, fixed so that a table without rows still has them.
CATALOG_SCHEMA = pa.schema([(column, pa.string()) for column in CATALOG_COLUMNS])
SUBSET_SCHEMA = pa.schema([("question_id", pa.string()), ("task", pa.string()), ("rank", pa.int64())])
# A model name becomes file names: the pattern params.yaml allows for model names.
MODEL_NAME = re.compile(r"[A-Za-z0-9._-]+")


class ScoreError(ValueError):
    """A benchmark or a request that cannot be scored; the text names the file or the option."""


@dataclass(frozen=True)
class Benchmark:
    """The questions to score and what the metrics join them with."""

    questions: dict[str, pd.DataFrame]  # task -> question table (this project's question schema)
    catalog: pd.DataFrame  # image_id, source, modality, disease
    subset: pd.DataFrame  # question_id, task, rank: SpineBench-Sub (empty for a JSON benchmark)
    has_subset: bool


# --- the benchmark ------------------------------------------------------------------------------------


def load_benchmark(path: Path) -> Benchmark:
    """A results/benchmark folder or an original-layout JSON file."""
    if path.is_dir():
        return load_benchmark_folder(path)
    if path.is_file():
        return load_benchmark_json(path)
    raise ScoreError(f"{path}: no such benchmark file or folder")


def load_benchmark_folder(folder: Path) -> Benchmark:
    """This project's benchmark tables: images.parquet, {task}.parquet and subset.parquet in `folder`."""
    names = ["images.parquet", *(f"{task}.parquet" for task in TASKS), "subset.parquet"]
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise ScoreError(f"{folder}: not a benchmark folder, it lacks {', '.join(missing)}")
    return Benchmark(
        questions={task: read_table(folder / f"{task}.parquet") for task in TASKS},
        catalog=read_table(folder / "images.parquet", columns=CATALOG_COLUMNS),
        subset=read_table(folder / "subset.parquet"),
        has_subset=True,
    )


def load_benchmark_json(path: Path) -> Benchmark:
    """The questions of an original-layout JSON file (spinebench.imports.spinebench_json), with a catalog
    built from them and no subset."""
    from spinebench.imports.spinebench_json import read_benchmark_json

    questions = read_benchmark_json(path)
    if not any(len(questions.get(task, ())) for task in TASKS):
        raise ScoreError(f"{path}: the benchmark file holds no question")
    # A file may hold questions of one task only: the other is scored on no question (null metrics).
    questions = {task: questions.get(task, pd.DataFrame(columns=list(QUESTION_COLUMNS))) for task in TASKS}
    return Benchmark(
        questions=questions,
        catalog=catalog_from_questions(questions, path),
        subset=SUBSET_SCHEMA.empty_table().to_pandas(),
        has_subset=False,
    )


def catalog_from_questions(questions: Mapping[str, pd.DataFrame], path: Path) -> pd.DataFrame:
    """One row per image of the questions: its source, modality and disease, `unknown` where no question
    records one. Two questions giving one image different values is an error naming the image."""
    rows = pd.concat(
        [frame.reindex(columns=CATALOG_COLUMNS) for frame in questions.values()], ignore_index=True
    )
    catalog = []
    for image_id, group in rows.groupby("image_id", sort=True):
        entry = {"image_id": image_id}
        for column in CATALOG_COLUMNS[1:]:
            values = sorted({str(value) for value in group[column] if pd.notna(value)})
            if len(values) > 1:
                raise ScoreError(f"{path}: image {image_id} has several values of {column}: {values}")
            entry[column] = values[0] if values else UNKNOWN
        catalog.append(entry)
    return pd.DataFrame(catalog, columns=CATALOG_COLUMNS)


# --- predictions ----------------------------------------------------------------------------------------


def answer_text(letters: Sequence[str] | None) -> str | None:
    """Extracted letters as the predictions table holds them: joined by ',' in letter order."""
    return None if letters is None else ",".join(sorted(set(letters), key=LETTERS.index))


def predictions_table(
    questions: pd.DataFrame, responses: pd.DataFrame, task: str, predictions_path: Path
) -> pd.DataFrame:
    """The *predictions* table (docs/contracts.md) of `task`: one row per question, the answer extracted
    from its response; a question without a response is a failed item naming the file."""
    by_question = dict(zip(responses["question_id"], responses["response"], strict=True))
    rows = []
    for question in questions.sort_values("question_id", kind="mergesort").to_dict("records"):
        question_id = question["question_id"]
        response = by_question.get(question_id)
        row = {
            "question_id": question_id,
            "image_id": question["image_id"],
            "response": response,
            "answer": None,
            "extraction": "error",
            "latency_s": None,
            "error": None,
            "attempts": 1,
            "judge_response": None,
        }
        if response is None:
            what = "no response" if question_id in by_question else "no prediction"
            row["error"] = f"{predictions_path}: {what} for question {question_id}"
        else:
            extraction = extract_answer(response, task, question_options(question))
            row["answer"] = answer_text(extraction.letters)
            row["extraction"] = extraction.method
        rows.append(row)
    return pd.DataFrame(rows, columns=PREDICTIONS_SCHEMA.names)


# --- scoring --------------------------------------------------------------------------------------------


def score_predictions(
    benchmark: Benchmark,
    predictions_path: Path,
    format: str,
    split: str,
    bootstrap_samples: int = DEFAULT_BOOTSTRAP_SAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> ModelScores:
    """Read the predictions of every task of the benchmark, extract their answers and score them."""
    if split == "subset" and not benchmark.has_subset:
        raise ScoreError(
            "the JSON layout does not mark SpineBench-Sub: score its evaluation/test.json with --split full"
        )
    with tempfile.TemporaryDirectory(prefix="spinebench-score-") as scratch:
        folder = Path(scratch)
        questions_paths, predictions_paths = {}, {}
        for task in TASKS:
            questions = benchmark.questions[task]
            responses = read_responses(format, predictions_path, task, questions)
            questions_paths[task] = folder / f"{task}.questions.parquet"
            predictions_paths[task] = folder / f"{task}.predictions.parquet"
            write_table(questions[list(QUESTION_COLUMNS)], questions_paths[task], schema=QUESTIONS_SCHEMA)
            write_table(
                predictions_table(questions, responses, task, predictions_path),
                predictions_paths[task],
                schema=PREDICTIONS_SCHEMA,
            )
        write_table(benchmark.catalog[CATALOG_COLUMNS], folder / "catalog.parquet", schema=CATALOG_SCHEMA)
        write_table(benchmark.subset[SUBSET_SCHEMA.names], folder / "subset.parquet", schema=SUBSET_SCHEMA)
        return score_model(
            predictions_paths,
            questions_paths,
            folder / "catalog.parquet",
            folder / "subset.parquet",
            split=split,
            bootstrap_samples=bootstrap_samples,
            confidence=confidence,
            seed=seed,
        )


def write_scores(scores: ModelScores, model: str, out_dir: Path) -> list[Path]:
    """Write the three tables of the workflow's score rule into `out_dir`; return their paths."""
    summary_path = out_dir / f"{model}.json"
    breakdown_path = out_dir / f"{model}.breakdown.csv"
    questions_path = out_dir / f"{model}.questions.parquet"
    write_model_scores(scores, model, summary_path, breakdown_path, questions_path)
    return [summary_path, breakdown_path, questions_path]


# --- command line ---------------------------------------------------------------------------------------


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="spinebench-score", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("benchmark", type=Path, help="original-layout JSON file or results/benchmark folder")
    parser.add_argument("predictions", type=Path, help="predictions file or folder")
    parser.add_argument("--format", required=True, choices=FORMATS, help="how the predictions are written")
    parser.add_argument("--out", type=Path, required=True, help="folder the score tables are written to")
    parser.add_argument("--model", help="model name of the tables (default: the predictions file's stem)")
    parser.add_argument(
        "--split",
        choices=SPLITS,
        help="questions to score: subset (SpineBench-Sub) or full; default subset for a benchmark folder, "
        "full for a JSON file",
    )
    parser.add_argument("--bootstrap-samples", type=int, default=DEFAULT_BOOTSTRAP_SAMPLES)
    parser.add_argument("--confidence", type=float, default=DEFAULT_CONFIDENCE)
    parser.add_argument("--seed", type=int, default=DEFAULT_BOOTSTRAP_SEED, help="bootstrap seed")
    arguments = parser.parse_args(argv)
    arguments.model = arguments.model or arguments.predictions.stem
    if not MODEL_NAME.fullmatch(arguments.model):
        parser.error(f"model name {arguments.model!r} may hold only letters, digits, '.', '_' and '-'")
    return arguments


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        benchmark = load_benchmark(arguments.benchmark)
        split = arguments.split or ("subset" if benchmark.has_subset else "full")
        scores = score_predictions(
            benchmark,
            arguments.predictions,
            arguments.format,
            split,
            arguments.bootstrap_samples,
            arguments.confidence,
            arguments.seed,
        )
    except ValueError as error:  # ImportFormatError, ScoreError and the metrics' input errors
        print(f"spinebench-score: error: {error}", file=sys.stderr)
        return 1
    for path in write_scores(scores, arguments.model, arguments.out):
        print(path)
    summary = scores.summary
    log.info("%s on %s: %s", arguments.model, split, summary["metrics"])
    log.info("questions %s; without a usable prediction %s", summary["questions"], summary["errors"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
