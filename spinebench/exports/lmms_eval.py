"""The benchmark as an lmms-eval task folder, over the Parquet files of the Hugging Face export.

Layout (results/exports/lmms_eval/spinebench/), for `lmms-eval --include_path results/exports/lmms_eval`:

    spinebench_diagnosis.yaml            one task per task and split (task_name): the full split and
    spinebench_diagnosis_subset.yaml     SpineBench-Sub (`_subset`)
    spinebench_localization.yaml
    spinebench_localization_subset.yaml
    spinebench.yaml                      group of the full-split tasks (`accuracy`: the paper's overall)
    spinebench_subset.yaml               group of the subset tasks
    utils.py                             the functions the YAML names (`!function utils.x`), which call
                                         spinebench.harness.lmms_eval: spinebench must be installed
    prompts/{task}.j2                    the prompt templates the folder was exported with

Each task loads its split with `datasets.load_dataset("parquet", data_files=...)` from the Hugging Face
export's files, named by paths relative to the project folder (lmms-eval is run from there): nothing comes
from the Hub. A split without questions gets no task (lmms-eval cannot load an empty split).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from spinebench.exports.common import (
    SPLITS,
    ExportInputs,
    benchmark_version,
    split_questions,
    write_folder_atomically,
)
from spinebench.harness.lmms_eval import TASK_METRICS
from spinebench.vocab import TASKS

log = logging.getLogger(__name__)

# The folder under the export that lmms-eval indexes; also the name of the full-split group.
TASK_FOLDER = "spinebench"

# Version of the task definitions (the YAML layout and utils.py); lmms-eval reports it beside the scores.
TASK_VERSION = 1

UTILS_SOURCE = '''\
"""SpineBench tasks for lmms-eval, exported by the spinebench workflow (scripts/export_lmms_eval.py).

The prompts are the paper's (prompts/ beside this file), answers are read by spinebench's extraction and
scored by its metrics: see spinebench.harness.lmms_eval. Needs the spinebench package installed.
"""

from pathlib import Path

from spinebench.harness.lmms_eval import SpineBenchTask, doc_to_visual, mean_score

PROMPTS = Path(__file__).resolve().parent / "prompts"

diagnosis = SpineBenchTask("diagnosis", PROMPTS)
localization = SpineBenchTask("localization", PROMPTS)

diagnosis_doc_to_text = diagnosis.doc_to_text
diagnosis_process_results = diagnosis.process_results
localization_doc_to_text = localization.doc_to_text
localization_process_results = localization.process_results

__all__ = [
    "diagnosis_doc_to_text",
    "diagnosis_process_results",
    "doc_to_visual",
    "localization_doc_to_text",
    "localization_process_results",
    "mean_score",
]
'''


class LmmsEvalExportError(ValueError):
    """A Hugging Face export, template or setting that cannot give the lmms-eval task folder."""


class FunctionRef(str):
    """A `!function utils.name` reference in a task YAML (lmms-eval imports it from utils.py)."""


class TaskDumper(yaml.SafeDumper):
    """YAML dumper that writes FunctionRef values with lmms-eval's `!function` tag."""


TaskDumper.add_representer(
    FunctionRef, lambda dumper, value: dumper.represent_scalar("!function", str(value))
)


def task_name(task: str, split: str) -> str:
    """lmms-eval's name of a task on a split: `spinebench_{task}`, `spinebench_{task}_subset`."""
    return f"{TASK_FOLDER}_{task}" if split == "full" else f"{TASK_FOLDER}_{task}_{split}"


def group_name(split: str) -> str:
    """The group of a split's tasks: `spinebench` (full) or `spinebench_subset`."""
    return TASK_FOLDER if split == "full" else f"{TASK_FOLDER}_{split}"


def split_files(hf_folder: Path, task: str, split: str) -> list[Path]:
    """The Parquet files of a task's split in the Hugging Face export, in name order (none for a split
    without questions)."""
    return sorted((hf_folder / task).glob(f"{split}-*-of-*.parquet"))


def check_split_rows(hf_folder: Path, files: Sequence[Path], expected: int, task: str, split: str) -> None:
    """Raise when the export's files do not hold the benchmark's question count (not this benchmark's
    export, or not an export at all)."""
    rows = sum(pq.ParquetFile(path).metadata.num_rows for path in files)
    if rows != expected:
        raise LmmsEvalExportError(
            f"{hf_folder}: {task}/{split} holds {rows} questions in {len(files)} files, the benchmark "
            f"{expected}: it is not the Hugging Face export of this benchmark"
        )


def task_config(task: str, split: str, data_files: Sequence[str], version: str, max_new_tokens: int) -> dict:
    """The YAML of one task on one split (lmms-eval's TaskConfig fields)."""
    return {
        "task": task_name(task, split),
        "dataset_path": "parquet",
        "dataset_kwargs": {"data_files": {split: list(data_files)}},
        "test_split": split,
        "output_type": "generate_until",
        "doc_to_visual": FunctionRef("utils.doc_to_visual"),
        "doc_to_text": FunctionRef(f"utils.{task}_doc_to_text"),
        "doc_to_target": "answer",
        "process_results": FunctionRef(f"utils.{task}_process_results"),
        "metric_list": [
            {"metric": metric, "aggregation": FunctionRef("utils.mean_score"), "higher_is_better": True}
            for metric in TASK_METRICS[task]
        ],
        # The prompts ask for reasoning before the final answer line: no stop sequence (lmms-eval's default
        # stops at the first blank line), greedy decoding.
        "generation_kwargs": {
            "max_new_tokens": max_new_tokens,
            "temperature": 0,
            "do_sample": False,
            "until": [],
        },
        # Clustered standard errors by image, the unit this project's bootstrap resamples.
        "cluster_key": "image_id",
        "score_key": "score",
        "metadata": {"version": TASK_VERSION, "benchmark_version": version, "split": split},
    }


def group_config(split: str, tasks: Sequence[str]) -> dict:
    """The YAML of a split's group: the unweighted mean of the tasks' `accuracy` is the paper's overall
    accuracy (the mean of the diagnosis and localization accuracies)."""
    return {
        "group": group_name(split),
        "task": list(tasks),
        "aggregate_metric_list": [{"metric": "accuracy", "aggregation": "mean", "weight_by_size": False}],
        "metadata": {"version": TASK_VERSION},
    }


def yaml_text(config: Mapping, version: str) -> str:
    """A task or group config as YAML (keys in the order given, `!function` tags for FunctionRef), under a
    comment saying where it comes from."""
    header = (
        f"# SpineBench for lmms-eval (benchmark version {version}), written by the spinebench workflow\n"
        "# (scripts/export_lmms_eval.py): rebuilt with the benchmark, so edits here do not last.\n"
    )
    return header + yaml.dump(
        dict(config), Dumper=TaskDumper, sort_keys=False, allow_unicode=True, width=1000
    )


def copy_templates(templates: Sequence[str | os.PathLike], folder: Path) -> None:
    """Copy the prompt templates (given in vocab.TASKS order) to `folder/prompts/{task}.j2`."""
    if len(templates) != len(TASKS):
        raise LmmsEvalExportError(
            f"expected one prompt template per task ({', '.join(TASKS)}), got {len(templates)}"
        )
    (folder / "prompts").mkdir(parents=True, exist_ok=True)
    for task, template in zip(TASKS, templates, strict=True):
        if Path(template).name != f"{task}.j2":
            raise LmmsEvalExportError(
                f"prompt template {template} is not {task}.j2 (templates go in TASKS order)"
            )
        (folder / "prompts" / f"{task}.j2").write_bytes(Path(template).read_bytes())


def export_lmms_eval(
    inputs: ExportInputs,
    folder: str | os.PathLike,
    hf_folder: str | os.PathLike,
    hf_reference: str,
    templates: Sequence[str | os.PathLike],
    max_new_tokens: int,
) -> list[str]:
    """Write the export `folder` (replaced atomically) holding the task folder `spinebench/`; return the
    names of the tasks written.

    `hf_folder` is the Hugging Face export as this job reads it; `hf_reference` the same folder as the task
    YAML names it (relative to the project folder, from where lmms-eval runs).
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise LmmsEvalExportError(f"max_new_tokens must be a positive integer, not {max_new_tokens!r}")
    with write_folder_atomically(Path(folder)) as staging:
        return write_task_folder(
            inputs, staging / TASK_FOLDER, Path(hf_folder), hf_reference, templates, max_new_tokens
        )


def write_task_folder(
    inputs: ExportInputs,
    tasks_folder: Path,
    hf_folder: Path,
    hf_reference: str,
    templates: Sequence[str | os.PathLike],
    max_new_tokens: int,
) -> list[str]:
    """Write the task YAMLs, group YAMLs, utils.py and prompts into `tasks_folder`; return the task names."""
    tasks_folder.mkdir(parents=True, exist_ok=True)
    version = benchmark_version(inputs.manifest)
    written: dict[str, list[str]] = {split: [] for split in SPLITS}
    for split in SPLITS:
        for task in TASKS:
            files = split_files(hf_folder, task, split)
            questions = len(split_questions(inputs, task, split))
            check_split_rows(hf_folder, files, questions, task, split)
            if questions == 0:
                log.warning(
                    "%s has no %s questions: no lmms-eval task %s", split, task, task_name(task, split)
                )
                continue
            data_files = [f"{hf_reference}/{task}/{path.name}" for path in files]
            config = task_config(task, split, data_files, version, max_new_tokens)
            (tasks_folder / f"{config['task']}.yaml").write_text(yaml_text(config, version), encoding="utf-8")
            written[split].append(config["task"])
        if written[split]:
            group = group_config(split, written[split])
            (tasks_folder / f"{group['group']}.yaml").write_text(yaml_text(group, version), encoding="utf-8")
    (tasks_folder / "utils.py").write_text(UTILS_SOURCE, encoding="utf-8")
    copy_templates(templates, tasks_folder)
    return [name for split in SPLITS for name in written[split]]
