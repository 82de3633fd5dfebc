"""The release: what `dvc push` publishes and `dvc pull` fetches, its manifest of content hashes, and the
checks that keep a workflow run from replacing a pulled release or evaluating it under params it was not
built with.

A release is the four folders of RELEASE_FOLDERS (the outputs of the `benchmark` stage of dvc.yaml).
`results/benchmark/manifest.json` describes it: the params its tables were drawn with, each benchmark table's
hash, rows and columns, and the hash of every other released file. `spinebench-verify` checks a release
against it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from spinebench.provenance import benchmark_params

# The folders a release consists of (the `benchmark` stage's outs in dvc.yaml), relative to the project.
RELEASE_FOLDERS: tuple[str, ...] = (
    "results/benchmark",
    "results/images",
    "results/embeddings",
    "results/rejected",
)
MANIFEST = "results/benchmark/manifest.json"
# SHA-256 of every manifest a build in this folder wrote, one a line. It is not part of the release: a
# folder that got its benchmark from `dvc pull` (or a copy) has a manifest that is not listed here.
BUILD_RECORD = "results/built-manifests.txt"

EVALUATE = ".venv/bin/snakemake -j8 --config mode=release"
BUILD = ".venv/bin/snakemake -j8"
PULL = ".venv/bin/dvc pull"


class ReleaseError(RuntimeError):
    """Running the workflow here would replace a release, or evaluate it under params it was not built
    with."""


# --- the manifest ---------------------------------------------------------------------------------------


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def table_entry(path: str | Path) -> dict:
    """Manifest entry of one Parquet table: hash, rows and column names.

    Names come from the Arrow schema: the Parquet schema names a list column's leaf `element`.
    """
    import pyarrow.parquet as pq  # here, not at the top: the workflow imports this module at every start

    return {
        "sha256": file_sha256(path),
        "rows": pq.read_metadata(path).num_rows,
        "columns": pq.read_schema(path).names,
    }


def build_manifest(
    table_paths: list[str],
    seeds: dict[str, int],
    encoder: str,
    pool_version: int | str,
    *,
    params: Mapping | None = None,
    files: Iterable[str] = (),
    root: str | Path = ".",
) -> dict:
    """Manifest of a release (no timestamps: it is deterministic).

    `table_paths` are the benchmark tables, keyed by file name under `tables`; `files` are the release's
    other files (image, embedding and rejected shards), paths relative to the project folder `root`,
    listed under `files`. `params` are the params that define the benchmark
    (spinebench.provenance.benchmark_params), `seeds` the seeds its tables were drawn with, `pool_version`
    the question paraphrase pool's `version`.
    """
    manifest = {
        "seeds": dict(sorted(seeds.items())),
        "encoder": encoder,
        "question_pool_version": pool_version,
        "tables": {Path(path).name: table_entry(path) for path in sorted(table_paths)},
    }
    if params is not None:
        manifest["params"] = dict(params)
    files = sorted(files)
    if files:
        manifest["files"] = {path: file_sha256(Path(root) / path) for path in files}
    return manifest


def read_manifest(root: str | Path = ".") -> dict:
    """The manifest of the release under `root`."""
    return json.loads((Path(root) / MANIFEST).read_text(encoding="utf-8"))


def manifest_files(manifest: Mapping) -> dict[str, str]:
    """Path relative to the project -> SHA-256 of every file the manifest lists, tables included."""
    folder = Path(MANIFEST).parent.as_posix()
    expected = {f"{folder}/{name}": entry["sha256"] for name, entry in manifest["tables"].items()}
    expected.update(manifest.get("files", {}))
    return expected


def verify_release(root: str | Path = ".") -> list[str]:
    """Every way the release under `root` differs from its manifest, one line per file: `differs: path`,
    `missing: path`, or `unexpected: path` (in a release folder, not in the manifest). Empty: it matches."""
    root = Path(root)
    if not (root / MANIFEST).exists():
        return [f"missing: {MANIFEST}"]
    expected = manifest_files(read_manifest(root))
    problems = []
    for path, digest in sorted(expected.items()):
        if not (root / path).is_file():
            problems.append(f"missing: {path}")
        elif file_sha256(root / path) != digest:
            problems.append(f"differs: {path}")
    present = {
        file.relative_to(root).as_posix()
        for folder in RELEASE_FOLDERS
        for file in (root / folder).rglob("*")
        if file.is_file()
    }
    problems += [f"unexpected: {path}" for path in sorted(present - set(expected) - {MANIFEST})]
    return problems


def verify_main(argv: Sequence[str] | None = None) -> int:
    """`spinebench-verify`: check the release in this folder (or --root) against its manifest."""
    parser = argparse.ArgumentParser(
        prog="spinebench-verify",
        description=f"Check the release in {', '.join(RELEASE_FOLDERS)} against {MANIFEST}: every file "
        "is listed with its SHA-256. Prints each file that differs, is missing or is not in the manifest.",
    )
    parser.add_argument("--root", default=".", help="the project folder holding results/ (default: here)")
    root = Path(parser.parse_args(argv).root)
    problems = verify_release(root)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} file(s) do not match {MANIFEST}", file=sys.stderr)
        return 1
    count = len(manifest_files(read_manifest(root)))
    print(f"ok: {count} files match {MANIFEST}")
    return 0


# --- which release a folder holds ----------------------------------------------------------------------


def recorded_builds(root: str | Path = ".") -> set[str]:
    """SHA-256 of every manifest a build in `root` wrote (the build record; empty without one)."""
    record = Path(root) / BUILD_RECORD
    return set(record.read_text(encoding="utf-8").split()) if record.exists() else set()


def record_build(manifest_sha256: str, root: str | Path = ".") -> None:
    """Add a manifest this folder's build is about to write to the build record (once: the same params
    build the same manifest, and the record stays as deterministic as the build).

    Called before the manifest is written: a build killed in between leaves a record naming a manifest
    that never appeared, which is harmless, never a folder's own manifest missing from its record (which
    would make the next build refuse to run).
    """
    if manifest_sha256 in recorded_builds(root):
        return
    record = Path(root) / BUILD_RECORD
    record.parent.mkdir(parents=True, exist_ok=True)
    with open(record, "a", encoding="utf-8") as handle:
        handle.write(manifest_sha256 + "\n")


def built_here(root: str | Path = ".") -> bool:
    """Whether the manifest under `root` was written by a build in this folder (its hash is recorded)."""
    return file_sha256(Path(root) / MANIFEST) in recorded_builds(root)


def flat_params(params: Mapping, prefix: str = "") -> dict[str, object]:
    """Nested params as dotted key -> value, JSON-normalised (tuples as lists), for comparison."""
    flat = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_params(value, f"{name}."))
        else:
            flat[name] = json.loads(json.dumps(value))
    return flat


def param_differences(here: Mapping, release: Mapping) -> list[str]:
    """One line per param whose value in `here` (params.yaml) differs from the release's."""
    ours, theirs = flat_params(here), flat_params(release)
    return [
        f"{key}: {json.dumps(ours.get(key))} in params.yaml, {json.dumps(theirs.get(key))} in the release"
        for key in sorted(set(ours) | set(theirs))
        if ours.get(key) != theirs.get(key)
    ]


def check_workspace(config: Mapping, root: str | Path = ".") -> None:
    """Raise ReleaseError, saying what to do, when the workflow must not run in `root` as configured.

    Build mode refuses to run where results/benchmark holds a release this folder did not build (a
    `dvc pull`, a copy): the build would replace it. Release mode refuses without a release, and when
    the params that define the benchmark differ from those the release was built with: editing them
    changes nothing in a release, and the run would not say so.
    """
    root = Path(root)
    if config["mode"] == "build":
        if (root / MANIFEST).exists() and not built_here(root):
            raise ReleaseError(
                f"{RELEASE_FOLDERS[0]} holds a benchmark release that was not built in this folder (from "
                f"`dvc pull` or a copy); a build would replace it.\n"
                f"  To evaluate models on it:   {EVALUATE}\n"
                f"  To build a benchmark here instead, replacing it, delete {MANIFEST} first."
            )
        return
    if not (root / MANIFEST).exists():
        raise ReleaseError(
            f"mode=release evaluates the release in {RELEASE_FOLDERS[0]}, which holds none ({MANIFEST} is "
            f"missing).\n  To fetch the published release:  {PULL}\n  To build one here:  {BUILD}"
        )
    release = read_manifest(root).get("params")
    if release is None:
        return  # a manifest older than the params record: nothing to compare with
    differences = param_differences(benchmark_params(config), release)
    if differences:
        remedy = (
            f"  To rebuild the benchmark with them:  {BUILD}"
            if built_here(root)
            else f"  If params.yaml is newer than the release (a `git pull`), fetch its release:  {PULL}\n"
            f"  Else set them back (`git diff params.yaml` shows them): a release is evaluated as it was "
            "built."
        )
        raise ReleaseError(
            f"params.yaml differs from the params the benchmark in {RELEASE_FOLDERS[0]} was built with:\n  "
            + "\n  ".join(differences)
            + f"\n{remedy}"
        )
