"""VLMEvalKit export and import: the TSVs read as VLMEvalKit reads them, and a prediction file written the way
its inference writes one maps back to the responses put in, which score as our own prediction tables do."""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from spinebench.exports.common import benchmark_version, split_questions
from spinebench.exports.vlmevalkit import (
    COLUMNS,
    DATASETS_FILE,
    HINTS,
    INDEX_BASE,
    export_vlmevalkit,
    tsv_line,
)
from spinebench.extract import extract_answer
from spinebench.finalize import PREDICTIONS_SCHEMA, write_predictions
from spinebench.imports import ImportFormatError
from spinebench.imports.vlmevalkit import EXCEL_TEXT_LIMIT, read_responses
from spinebench.metrics import score_model
from spinebench.prompts import question_options
from spinebench.vocab import LETTERS, TASKS
from tests.benchmark_fixture import export_inputs_of, run_export_scripts, write_tiny_benchmark

REPO = Path(__file__).resolve().parents[1]

# What VLMEvalKit's inference writes for a response it could not obtain (vlmeval/inference.py FAIL_MSG).
FAILURE = "Failed to obtain answer via API."


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    """The tiny benchmark, its export inputs and its VLMEvalKit export (written once for the module)."""
    root = tmp_path_factory.mktemp("vlmevalkit")
    paths = write_tiny_benchmark(root)
    inputs = export_inputs_of(paths)
    folder = root / "results" / "exports" / "vlmevalkit"
    export_vlmevalkit(inputs, folder)
    datasets = json.loads((folder / DATASETS_FILE).read_text(encoding="utf-8"))["datasets"]
    return {"paths": paths, "inputs": inputs, "folder": folder, "datasets": datasets, "root": root}


def dataset_of(benchmark: dict, task: str, split: str) -> dict:
    """The datasets.json entry of `task` and `split`."""
    return next(entry for entry in benchmark["datasets"] if (entry["task"], entry["split"]) == (task, split))


def load_like_vlmevalkit(tsv: Path) -> pd.DataFrame:
    """The dataset table VLMEvalKit holds after reading a TSV: vlmeval/smp/file.py load() reads it with
    pd.read_csv(sep="\\t"); ImageBaseDataset.__init__ drops rows without image and makes `index` str, then
    int when every index is one."""
    data = pd.read_csv(tsv, sep="\t")
    data = data[~pd.isna(data["image"])]
    data["index"] = [int(value) for value in data["index"].astype(str)]
    return data


def write_like_vlmevalkit(tsv: Path, responses: dict[str, str], output: Path, edit=None) -> Path:
    """A prediction file as vlmeval/inference.py infer_data_job writes it: the dataset's rows with
    `prediction` = str(response), `image` removed, dumped by vlmeval/smp/file.py dump() for the file's
    suffix (.xlsx through xlsxwriter without formula conversion; .tsv and .json as PRED_FORMAT asks).
    `edit(data)`, when given, changes the table before it is written (a damaged or foreign file)."""
    data = load_like_vlmevalkit(tsv)
    data["prediction"] = [str(responses[question_id]) for question_id in data["question_id"]]
    data.pop("image")
    if edit is not None:
        edit(data)
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix == ".xlsx":
        with pd.ExcelWriter(
            output, engine="xlsxwriter", engine_kwargs={"options": {"strings_to_formulas": False}}
        ) as writer:
            data.to_excel(writer, index=False)
    elif output.suffix == ".tsv":
        data.to_csv(output, sep="\t", index=False, encoding="utf-8", quoting=csv.QUOTE_ALL)
    else:
        output.write_text(json.dumps(data.to_dict("records"), indent=4, ensure_ascii=False), encoding="utf-8")
    return output


def model_responses(benchmark: dict, task: str) -> dict[str, str]:
    """Varied responses to every question of `task`: right, wrong, partly right, hostile-looking text,
    a pandas missing-value word, a formula-looking text and VLMEvalKit's failure text."""
    questions = benchmark["paths"]["frames"][task].sort_values("question_id")
    responses = {}
    for position, question in enumerate(questions.to_dict("records")):
        truth = question["answer"].split(",")
        wrong = [letter for letter in LETTERS if letter not in truth]
        kind = position % 5
        if kind == 0:
            text = (
                f"Reasoning...\nMy final option{'s' if task == 'localization' else ''}: [{', '.join(truth)}]"
            )
        elif kind == 1:
            text = f"I pick {wrong[0]}.\tThe answer is {wrong[0]}"
        elif kind == 2:
            text = f"=SUM({', '.join(truth[:1] + wrong[:1])}) <b>{truth[0]}, {wrong[0]}</b>"
        elif kind == 3:
            text = "NA"
        else:
            text = FAILURE
        responses[question["question_id"]] = text
    return responses


def expected_responses(responses: dict[str, str]) -> dict[str, str | None]:
    """What the import should give: VLMEvalKit's failure text is no response."""
    return {qid: None if text == FAILURE else text for qid, text in responses.items()}


def predictions_table(task: str, questions: pd.DataFrame, responses: dict[str, str | None]) -> pd.DataFrame:
    """A *predictions* table (docs/contracts.md) for the responses, read by our extraction the way
    spinebench.finalize reads a model's responses (a missing response is an error row)."""
    rows = []
    for question in questions.to_dict("records"):
        if question["question_id"] not in responses:
            continue
        response = responses[question["question_id"]]
        extraction = (
            extract_answer(response, task, question_options(question)) if response is not None else None
        )
        rows.append(
            {
                "question_id": question["question_id"],
                "image_id": question["image_id"],
                "response": response,
                "answer": ",".join(extraction.letters) if extraction and extraction.letters else None,
                "extraction": extraction.method if extraction else "error",
                "latency_s": 0.0,
                "error": None if response is not None else "no response",
                "attempts": 1,
                "judge_response": None,
            }
        )
    return pd.DataFrame(rows, columns=PREDICTIONS_SCHEMA.names)


def scores(benchmark: dict, tables: dict[str, pd.DataFrame], folder: Path, split: str):
    """score_model on prediction tables of both tasks written under `folder`."""
    paths = benchmark["paths"]
    predictions = {}
    for task, table in tables.items():
        predictions[task] = folder / f"{task}.parquet"
        write_predictions(table, predictions[task])
    return score_model(
        predictions,
        dict(zip(TASKS, paths["questions"], strict=True)),
        paths["catalog"],
        paths["subset"],
        split=split,
        bootstrap_samples=20,
        confidence=0.95,
        seed=1,
    )


def test_tsvs_hold_the_questions_as_vlmevalkit_reads_them(benchmark):
    inputs = benchmark["inputs"]
    version = benchmark_version(inputs.manifest)
    names = sorted(entry["name"] for entry in benchmark["datasets"])
    assert names == sorted(
        f"SpineBench_{short}{suffix}_{version}" for short in ("DX", "LOC") for suffix in ("", "_SUB")
    )
    full_index = {}
    for task in TASKS:
        for split in ("full", "subset"):
            entry = dataset_of(benchmark, task, split)
            path = benchmark["folder"] / entry["file"]
            data = load_like_vlmevalkit(path)
            assert list(pd.read_csv(path, sep="\t", nrows=0).columns) == list(COLUMNS)
            assert data["index"].dtype.kind == "i"
            questions = split_questions(inputs, task, split)
            assert entry["questions"] == len(data) == len(questions) and entry["bytes"] == path.stat().st_size
            assert list(data["question_id"]) == list(questions["question_id"])
            for row, question in zip(data.to_dict("records"), questions.to_dict("records"), strict=True):
                assert base64.b64decode(row["image"]) == benchmark["paths"]["pngs"][question["image_id"]]
                assert {letter: row[letter] for letter in LETTERS} == question_options(question)
                assert (row["question"], row["answer"], row["category"]) == (
                    question["question"],
                    question["answer"],
                    question["disease"],
                )
                assert row["hint"] == HINTS[task]
                # A question keeps its index in both splits: the full set's, offset by its task's base.
                assert full_index.setdefault(row["question_id"], row["index"]) == row["index"]
            if split == "full":
                assert list(data["index"]) == list(range(INDEX_BASE[task], INDEX_BASE[task] + len(data)))
    localization = load_like_vlmevalkit(
        benchmark["folder"] / dataset_of(benchmark, "localization", "full")["file"]
    )
    assert any("," in answer for answer in localization["answer"])  # the several-letter convention is used


def test_export_is_byte_identical_when_run_again(benchmark, tmp_path):
    again = tmp_path / "again"
    export_vlmevalkit(benchmark["inputs"], again)
    first = {path.name: path.read_bytes() for path in benchmark["folder"].iterdir()}
    assert first == {path.name: path.read_bytes() for path in again.iterdir()}


def test_script_writes_the_export(benchmark, tmp_path):
    paths = benchmark["paths"]
    output = tmp_path / "exports" / "vlmevalkit"
    run_export_scripts(paths, tmp_path, "vlmevalkit", output, manifest=paths["manifest"])
    assert {path.name: path.read_bytes() for path in output.iterdir()} == {
        path.name: path.read_bytes() for path in benchmark["folder"].iterdir()
    }


@pytest.mark.parametrize("suffix", [".xlsx", ".tsv", ".json"])
def test_prediction_file_maps_back_and_scores_like_our_own_predictions(benchmark, tmp_path, suffix):
    frames = benchmark["paths"]["frames"]
    imported, own = {}, {}
    for task in TASKS:
        responses = model_responses(benchmark, task)
        tsv = benchmark["folder"] / dataset_of(benchmark, task, "full")["file"]
        output = write_like_vlmevalkit(tsv, responses, tmp_path / "outputs" / f"Echo_{tsv.stem}{suffix}")
        read = read_responses(output, task, frames[task])
        assert dict(zip(read["question_id"], read["response"], strict=True)) == expected_responses(responses)
        imported[task] = predictions_table(
            task, frames[task], dict(zip(read["question_id"], read["response"], strict=True))
        )
        own[task] = predictions_table(task, frames[task], expected_responses(responses))
    for split in ("full", "subset"):
        from_file = scores(benchmark, imported, tmp_path / "imported", split)
        ours = scores(benchmark, own, tmp_path / "own", split)
        assert from_file.summary == ours.summary
        assert from_file.questions.equals(ours.questions)
        correct = from_file.questions.column("correct").to_pylist()
        assert 0 < sum(correct) < len(correct)  # some right, some wrong: a shifted mapping would show


def test_rows_map_by_index_without_question_id(benchmark, tmp_path):
    frames = benchmark["paths"]["frames"]
    responses = model_responses(benchmark, "localization")
    tsv = benchmark["folder"] / dataset_of(benchmark, "localization", "subset")["file"]
    output = write_like_vlmevalkit(
        tsv, responses, tmp_path / "sub.xlsx", edit=lambda data: data.pop("question_id")
    )
    read = read_responses(output, "localization", frames["localization"])
    subset_ids = list(load_like_vlmevalkit(tsv)["question_id"])
    assert list(read["question_id"]) == subset_ids
    assert list(read["response"]) == [expected_responses(responses)[qid] for qid in subset_ids]
    with pytest.raises(
        ImportFormatError, match=r"sub\.xlsx: row 2: index 2000000 is not a diagnosis question"
    ):
        read_responses(output, "diagnosis", frames["diagnosis"])


def test_folder_holding_the_task_file_is_read(benchmark, tmp_path):
    frames = benchmark["paths"]["frames"]
    for task in TASKS:
        tsv = benchmark["folder"] / dataset_of(benchmark, task, "full")["file"]
        write_like_vlmevalkit(
            tsv, model_responses(benchmark, task), tmp_path / "run" / f"Echo_{tsv.stem}.xlsx"
        )
    # What VLMEvalKit's evaluation adds beside a prediction file.
    stem = f"Echo_{dataset_of(benchmark, 'diagnosis', 'full')['name']}"
    (tmp_path / "run" / f"{stem}_acc.csv").write_text("split,Overall\n")
    shutil.copy(tmp_path / "run" / f"{stem}.xlsx", tmp_path / "run" / f"{stem}_exact_matching_result.xlsx")
    read = read_responses(tmp_path / "run", "diagnosis", frames["diagnosis"])
    assert sorted(read["question_id"]) == sorted(frames["diagnosis"]["question_id"])
    subset_tsv = benchmark["folder"] / dataset_of(benchmark, "diagnosis", "subset")["file"]
    write_like_vlmevalkit(
        subset_tsv, model_responses(benchmark, "diagnosis"), tmp_path / "run" / f"Echo_{subset_tsv.stem}.xlsx"
    )
    with pytest.raises(
        ImportFormatError, match=r"expected one VLMEvalKit prediction file .*found Echo_SpineBench_DX_"
    ):
        read_responses(tmp_path / "run", "diagnosis", frames["diagnosis"])


def unknown_id(data: pd.DataFrame) -> None:
    data.loc[3, "question_id"] = "dx-nowhere"


def duplicate_id(data: pd.DataFrame) -> None:
    data.loc[4, "question_id"] = data.loc[1, "question_id"]


def renamed_option(data: pd.DataFrame) -> None:
    data.loc[2, "B"] = "Osteophytes (renamed)"


def no_prediction(data: pd.DataFrame) -> None:
    data.pop("prediction")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (unknown_id, r"Echo_DX\.xlsx: row 5: dx-nowhere is not a diagnosis question"),
        (duplicate_id, r"Echo_DX\.xlsx: row 6: dx-buu-0002-LA was already answered in row 3"),
        (
            renamed_option,
            r"Echo_DX\.xlsx: row 4: dx-csxa-0001's B is 'Osteophytes \(renamed\)' in the file .* version",
        ),
        (no_prediction, r"Echo_DX\.xlsx: a VLMEvalKit prediction file needs `prediction`"),
    ],
)
def test_bad_rows_are_named(benchmark, tmp_path, edit, message):
    tsv = benchmark["folder"] / dataset_of(benchmark, "diagnosis", "full")["file"]
    responses = model_responses(benchmark, "diagnosis")
    output = write_like_vlmevalkit(tsv, responses, tmp_path / "Echo_DX.xlsx", edit=edit)
    with pytest.raises(ImportFormatError, match=message):
        read_responses(output, "diagnosis", benchmark["paths"]["frames"]["diagnosis"])


def test_file_of_the_other_task_is_refused(benchmark, tmp_path):
    tsv = benchmark["folder"] / dataset_of(benchmark, "localization", "full")["file"]
    output = write_like_vlmevalkit(tsv, model_responses(benchmark, "localization"), tmp_path / "Echo_LOC.tsv")
    with pytest.raises(
        ImportFormatError, match=r"Echo_LOC\.tsv: row 2: loc-buu-0001-AP is not a diagnosis question"
    ):
        read_responses(output, "diagnosis", benchmark["paths"]["frames"]["diagnosis"])


def test_excel_cut_response_is_logged(benchmark, tmp_path, caplog):
    responses = model_responses(benchmark, "diagnosis")
    first = min(responses)
    responses[first] = "x" * (EXCEL_TEXT_LIMIT + 100) + "\nMy final option: [A]"
    tsv = benchmark["folder"] / dataset_of(benchmark, "diagnosis", "full")["file"]
    with pytest.warns(UserWarning, match="truncated to 32767"):  # pandas passes on xlsxwriter's cut
        output = write_like_vlmevalkit(tsv, responses, tmp_path / "long.xlsx")
    read = read_responses(output, "diagnosis", benchmark["paths"]["frames"]["diagnosis"])
    assert len(read.set_index("question_id").at[first, "response"]) == EXCEL_TEXT_LIMIT
    assert "long.xlsx: row 2: the prediction fills an Excel cell" in caplog.text


def test_unreadable_file_is_named(tmp_path):
    broken = tmp_path / "Echo_SpineBench_DX.xlsx"
    broken.write_text("not a workbook")
    with pytest.raises(ImportFormatError, match=r"Echo_SpineBench_DX\.xlsx: cannot be read"):
        read_responses(broken, "diagnosis", pd.DataFrame({"question_id": []}))


def test_a_line_is_what_the_csv_module_writes(tmp_path):
    record = ["1000007", base64.b64encode(bytes(range(256)) * 40).decode("ascii"), 'Is it "A"\tor B?\nSay.']
    record += ["hint", "A", "B\tb", "C", 'D"', "E", "A,C", "Healthy", "dx-1", "img", "rsna", "MRI", "lumbar"]
    buffer = io.StringIO()
    csv.writer(buffer, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL).writerow(record)
    assert tsv_line(record) == buffer.getvalue()
