"""Zero-shot prompts of the paper (Figures 9 and 10) rendered from Jinja templates.

The templates live in `templates/prompts/{task}.j2` and the optional disease definitions (the paper's
Table 3 ablation, `evaluate.disease_definitions`) in `resources/disease_definitions.yaml`. Rendering uses
StrictUndefined so that a missing question field fails loudly instead of producing a silently broken prompt.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from pathlib import Path

import jinja2
import yaml

from spinebench.vocab import LABELS, LETTERS, TASKS

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATES_DIR = REPO_ROOT / "templates" / "prompts"
DEFINITIONS_PATH = REPO_ROOT / "resources" / "disease_definitions.yaml"

# Question-table columns holding the options, in letter order (docs/contracts.md, *questions*).
OPTION_COLUMNS: tuple[str, ...] = tuple(f"option_{letter.lower()}" for letter in LETTERS)


class PromptError(ValueError):
    """A question, template or definitions file that cannot produce a prompt."""


def _is_missing(value) -> bool:
    """True for None, NaN/NA and empty or blank strings (what pandas gives for a missing cell)."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str):
        return not value.strip()
    try:
        import pandas as pd

        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _question_label(question: Mapping) -> str:
    """How an error message names a question: its question_id when it has one."""
    return str(question.get("question_id", "<question without question_id>"))


def question_options(question: Mapping) -> dict[str, str]:
    """Letters A..E mapped to the option texts of a question row (columns option_a .. option_e)."""
    options: dict[str, str] = {}
    for letter, column in zip(LETTERS, OPTION_COLUMNS, strict=True):
        value = question.get(column)
        if _is_missing(value):
            raise PromptError(
                f"question {_question_label(question)}: option column {column!r} is missing or empty"
            )
        options[letter] = str(value)
    if len(set(options.values())) != len(options):
        raise PromptError(f"question {_question_label(question)}: options are not distinct: {options}")
    return options


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise PromptError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")


@functools.lru_cache(maxsize=8)
def _environment(templates_dir: str) -> jinja2.Environment:
    """One Jinja environment per template folder; StrictUndefined turns a missing field into an error."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # plain-text prompts: HTML escaping would corrupt them
        keep_trailing_newline=False,
    )


def template_path(task: str, templates_dir: str | Path | None = None) -> Path:
    """Path of the prompt template of `task`."""
    _check_task(task)
    return Path(templates_dir or TEMPLATES_DIR) / f"{task}.j2"


def template_source(task: str, templates_dir: str | Path | None = None) -> str:
    """Raw text of the prompt template of `task` (part of the prediction fingerprint)."""
    path = template_path(task, templates_dir)
    if not path.is_file():
        raise PromptError(f"prompt template for task {task!r} not found: {path}")
    return path.read_text(encoding="utf-8")


@functools.lru_cache(maxsize=8)
def _load_definitions_cached(path: str) -> tuple[tuple[str, str], ...]:
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise PromptError(f"cannot read disease definitions {path}: {error}") from error
    if not isinstance(document, Mapping) or not isinstance(document.get("definitions"), Mapping):
        raise PromptError(f"disease definitions {path}: expected a mapping with a 'definitions' mapping")
    definitions = document["definitions"]
    unknown = sorted(set(definitions) - set(LABELS))
    missing = [label for label in LABELS if label not in definitions]
    if unknown or missing:
        raise PromptError(f"disease definitions {path}: unknown labels {unknown}, missing labels {missing}")
    pairs = []
    for label in LABELS:
        text = definitions[label]
        if _is_missing(text) or not isinstance(text, str):
            raise PromptError(f"disease definitions {path}: definition of {label!r} is empty or not text")
        pairs.append((label, " ".join(text.split())))
    return tuple(pairs)


def load_definitions(path: str | Path | None = None) -> tuple[tuple[str, str], ...]:
    """(label, definition) pairs for every label of vocab.LABELS, in vocabulary order, validated."""
    return _load_definitions_cached(str(Path(path or DEFINITIONS_PATH).resolve()))


def render_prompt(
    task: str,
    question: Mapping,
    definitions: bool,
    *,
    templates_dir: str | Path | None = None,
    definitions_path: str | Path | None = None,
) -> str:
    """The prompt text for one question row of `task`, optionally with the disease definitions."""
    _check_task(task)
    if _is_missing(question.get("question")):
        raise PromptError(f"question {_question_label(question)}: the 'question' text is missing or empty")
    options = question_options(question)
    definition_pairs = load_definitions(definitions_path) if definitions else ()
    directory = str(Path(templates_dir or TEMPLATES_DIR).resolve())
    try:
        template = _environment(directory).get_template(f"{task}.j2")
        return template.render(question=str(question["question"]), definitions=definition_pairs, **options)
    except jinja2.TemplateNotFound as error:
        raise PromptError(f"prompt template for task {task!r} not found in {directory}") from error
    except jinja2.UndefinedError as error:
        raise PromptError(
            f"question {_question_label(question)}: template {task}.j2 failed: {error}"
        ) from error
