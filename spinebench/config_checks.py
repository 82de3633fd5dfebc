"""Checks of params.yaml that its JSON schema cannot express, run when the workflow starts.

The schema (schemas/params.schema.json) already rejects unknown keys, wrong types and, per backend, any
setting that backend does not accept. What is left needs logic: percentile pairs in order, the API
keys of the models that still have questions to answer, and the predictions files of imported models.
Each problem names its params key, so that a mistake is reported before any job runs rather than when the
job that reads the key fails, maybe hours in.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from spinebench.imports import FORMATS

# render keys holding a (low, high) percentile pair.
PERCENTILE_KEYS = ("mr_percentiles", "xray_percentiles")


class ConfigError(ValueError):
    """params.yaml asks for something impossible; the message lists every such key."""


def percentile_problems(render: Mapping) -> list[str]:
    """One message per render percentile pair whose low is not below its high."""
    problems = []
    for key in PERCENTILE_KEYS:
        low, high = render[key]
        if not low < high:
            problems.append(f"render.{key} is [{low}, {high}]: the low percentile must be below the high one")
    return problems


def missing_api_keys(
    models: Mapping[str, Mapping], environ: Mapping[str, str], needs_predictions: Callable[[str], bool]
) -> list[str]:
    """One message per model that names an unset (or empty) `api_key_env` and still has questions to ask.

    A model whose predictions are all written needs no key: a report can be rebuilt in a shell without it.
    """
    problems = []
    for name, settings in models.items():
        variable = settings.get("api_key_env")
        if variable and not environ.get(variable) and needs_predictions(name):
            problems.append(
                f"models.{name}.api_key_env names {variable}, which is not set in this environment: "
                f"export {variable}=... before running, or remove the model"
            )
    return problems


def imported_problems(models: Mapping[str, Mapping], judge: str | None) -> list[str]:
    """One message per imported model (`backend: imported`) whose format has no reader or whose
    predictions file or folder is not there, and one when the judge is an imported model (it has no
    predictions for the judge's questions). Paths are relative to the project folder, as the jobs see them.
    """
    problems = []
    for name, settings in models.items():
        if settings.get("backend") != "imported":
            continue
        if settings.get("format") not in FORMATS:
            problems.append(
                f"models.{name}.format is {settings.get('format')!r}; expected one of {', '.join(FORMATS)}"
            )
        locations = {"path": settings["path"]} if settings.get("path") is not None else {}
        locations |= {f"tasks.{task}": path for task, path in (settings.get("tasks") or {}).items()}
        for key, path in locations.items():
            if not os.path.exists(path):
                problems.append(
                    f"models.{name}.{key} is {path}, which does not exist (relative paths start at the "
                    "project folder)"
                )
        if name == judge:
            problems.append(
                f"evaluate.judge names {name}, an imported model: a judge must answer new prompts"
            )
    return problems


def check_config(config: Mapping, needs_predictions: Callable[[str], bool], environ=os.environ) -> None:
    """Raise ConfigError listing every problem of `config` (already validated against the schema)."""
    problems = percentile_problems(config["render"])
    problems += missing_api_keys(config["models"], environ, needs_predictions)
    problems += imported_problems(config["models"], config["evaluate"]["judge"])
    if problems:
        raise ConfigError(
            "invalid settings (params.yaml, --config, --configfile):\n  " + "\n  ".join(problems)
        )
