"""Read-only access to the raw source archives, in place.

A configured source path may be the downloaded zip, its extracted folder, a folder that holds the zip
(e.g. `resources/synthetic/rsna/`), or a folder with the dataset one or more single top folders down
(`BUU-LSPINE_400/BUU-LSPINE_400/`). `open_source` resolves all of these to one `SourceArchive` whose
member paths are relative to the dataset root, so the rest of the pipeline never sees the packaging.

Archives are not trusted: every member path is validated (no `..`, absolute paths, drive letters or
backslashes) and every read is capped at `MAX_MEMBER_BYTES`, checked against the zip header *and* the
bytes actually decompressed (a header can lie). Zip members are streamed; nothing is extracted to disk.
Opening is cheap (the zip central directory, or one directory walk), so every job opens its own archive.

Symbolic links: the configured path may itself be a link (or sit below one); its real path is the dataset
folder. Inside it, a link is followed when its target resolves inside that real folder, and refused with an
ArchiveError naming the link and its target when it leaves it (or is broken, or loops): a dataset, often
extracted from someone else's archive, must not make the build read and publish files from elsewhere on
the machine. A dataset whose images live on another disk is configured by pointing `path` at a folder that
really holds the whole dataset (or a link to it), or by bind-mounting the images in place.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: the workflow imports this module (inventory) at every start
    import pandas as pd

# Largest member read into memory. The biggest real members are RSNA DICOM slices and CSXA LabelMe JSONs
# with embedded images (a few MB); 512 MiB leaves ample room while stopping zip bombs.
MAX_MEMBER_BYTES = 512 * 1024 * 1024

# macOS archivers add resource forks under this folder; they are packaging, not data.
_PACKAGING_PREFIXES = ("__MACOSX/",)
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")

# Names of the downloaded archives (shared/SOURCES.md), preferred when a folder holds several files.
ARCHIVE_NAMES: dict[str, tuple[str, ...]] = {
    "rsna": ("rsna-2024-lumbar-spine-degenerative-classification.zip",),
    "vindr": (
        "vindr-spinexr-a-large-annotated-medical-image-dataset-for-spinal-lesions-detection-and-"
        "classification-from-radiographs-1.0.0.zip",
        "vindr-spinexr-1.0.0.zip",
    ),
    "buu": ("BUU-LSPINE_400.zip", "BUU-LSPINE_3600.zip"),
}

# CSXA ships three files; each maps to a fixed member prefix of the merged archive.
CSXA_PARTS: dict[str, str] = {"datasets-PNG": ".png", "datasets-JSON": ".json"}
CSXA_SHEET = "datasets.xlsx"


class ArchiveError(Exception):
    """A raw archive cannot be resolved or read safely (the message names the archive and member).

    `detail`, for an error about one member, is the message without the archive's location: what a
    rejected row records, so that the rejected tables do not depend on where the archive lies.
    """

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail or message


def validate_member_path(archive: str, name: str) -> str:
    """Return `name` if it is a safe relative POSIX path, else raise ArchiveError naming both.

    Rejects `..` and `.` components, empty components, absolute paths, drive letters and backslashes, so a
    crafted archive can never address anything outside its own root (zip slip).
    """
    problem = None
    if "\\" in name:
        problem = "contains a backslash"
    elif name.startswith("/"):
        problem = "is an absolute path"
    elif _DRIVE_LETTER.match(name):
        problem = "starts with a drive letter"
    elif any(part in ("", ".", "..") for part in name.split("/")):
        problem = "has an empty, '.' or '..' component"
    if problem:
        raise ArchiveError(f"{archive}: unsafe member path {name!r} ({problem})")
    return name


def is_packaging(name: str) -> bool:
    """True for files that belong to the packaging, not the dataset: `__MACOSX/` resource forks and hidden
    files or folders (`.DS_Store`, Snakemake's `.snakemake_timestamp`); none of the sources has such data."""
    return name.startswith(_PACKAGING_PREFIXES) or any(part.startswith(".") for part in name.split("/"))


def _check_size(archive: str, member: str, size: int) -> None:
    if size > MAX_MEMBER_BYTES:
        detail = f"member {member!r} is {size} bytes, over the {MAX_MEMBER_BYTES}-byte limit"
        raise ArchiveError(f"{archive}: {detail}", detail)


@dataclass(frozen=True)
class FolderFile:
    """A regular file found by walk_folder."""

    name: str  # POSIX path relative to the walked folder, through links as the dataset lays it out
    path: str  # its real path (every symbolic link resolved): what is read; a str, as sets have 150,000
    size: int
    mtime_ns: int


# How to configure a dataset whose files sit behind a link that leaves it (ends every refusal message).
_LINK_ADVICE = (
    "links are followed only inside the dataset folder. Set the source's `path` to a folder that really "
    "holds the whole dataset (that folder may itself be a symbolic link, e.g. to the bigger disk), or "
    "bind-mount or copy the target into place"
)


def real_path(path: str | os.PathLike) -> Path:
    """`path` with every symbolic link resolved (absolute); the boundary walk_folder and open_source use."""
    return Path(os.path.realpath(path))


def follow_inside(boundary: Path, path: Path, shown: str, label: str) -> Path:
    """The real path of `path`, refusing a link that leaves `boundary`, is broken or cannot be resolved.

    `boundary` is a real path; `shown` names `path` in the message (a member-like relative name). A path that
    is not a link but sits in a folder already inside the boundary passes unchanged (resolved).
    """
    target = real_path(path)
    if not target.is_relative_to(boundary):
        raise ArchiveError(
            f"{label}: {shown} is a symbolic link to {target}, outside the dataset folder {boundary}; "
            + _LINK_ADVICE
        )
    if not target.exists():
        written = os.readlink(path) if path.is_symlink() else target
        raise ArchiveError(
            f"{label}: {shown} is a broken symbolic link (its target {written} does not exist or loops)"
        )
    return target


def walk_folder(
    folder: str | os.PathLike, boundary: Path | None = None, label: str | None = None
) -> list[FolderFile]:
    """Every regular file under `folder`, sorted by name, following symbolic links that stay inside.

    `boundary` (a real path, default the real path of `folder`) is where links may lead: a link whose target
    resolves outside it, a broken link and a link to a folder that contains it (a loop) raise ArchiveError
    naming the link. Hidden entries (`.git`, `.DS_Store`, Snakemake's `.snakemake_timestamp`) are packaging
    and not entered. Sockets, FIFOs and devices are not dataset files and are skipped (reading a FIFO would
    block the job). The archive and the inventory both list folders with this, so they see the same files.
    """
    folder = Path(folder)
    label = label or str(folder)
    boundary = boundary or real_path(folder)
    root = str(follow_inside(boundary, folder, ".", label))
    found: list[FolderFile] = []
    # (name prefix, real folder, real folders on the way down): an explicit stack, as a crafted dataset may
    # nest deeper than Python's recursion limit; the chain detects loops made through links.
    pending: list[tuple[str, str, tuple[str, ...]]] = [("", root, (root,))]
    while pending:
        prefix, directory, chain = pending.pop()
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
        for entry in entries:
            if entry.name.startswith("."):
                continue
            name = prefix + entry.name
            if entry.is_symlink():
                target = follow_inside(boundary, Path(entry.path), name, label)
                path, is_dir, is_file = str(target), target.is_dir(), target.is_file()
            else:  # the type scandir already read: no extra system call per file of a 150,000-file set
                path = entry.path  # real, as `directory` is
                is_dir, is_file = entry.is_dir(follow_symlinks=False), entry.is_file(follow_symlinks=False)
            if is_dir:
                if path in chain:
                    raise ArchiveError(
                        f"{label}: {name} is a symbolic link to {path}, a folder that contains it (a loop)"
                    )
                pending.append((name + "/", path, (*chain, path)))
            elif is_file:
                status = os.stat(path)
                found.append(FolderFile(name, path, status.st_size, status.st_mtime_ns))
    return sorted(found, key=lambda file: file.name)


class _Container:
    """One physical container (a zip, a folder or a lone file) with validated names and their sizes."""

    label: str
    # Validated relative POSIX names mapped to their uncompressed sizes; read-only after __init__.
    sizes: dict[str, int]

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _ZipContainer(_Container):
    def __init__(self, path: Path):
        self.label = str(path)
        try:
            self._zip = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as error:
            raise ArchiveError(f"{path}: not a readable zip file ({error})") from error
        self._infos: dict[str, zipfile.ZipInfo] = {}
        for info in self._zip.infolist():
            validate_member_path(self.label, info.filename.rstrip("/") if info.is_dir() else info.filename)
            if info.is_dir() or is_packaging(info.filename):
                continue
            if info.filename in self._infos:
                raise ArchiveError(f"{path}: member {info.filename!r} appears twice")
            self._infos[info.filename] = info
        self.sizes = {name: info.file_size for name, info in self._infos.items()}

    def read(self, name: str) -> bytes:
        info = self._infos[name]
        _check_size(self.label, name, info.file_size)
        try:
            with self._zip.open(info) as stream:
                # Read one byte past the limit so a header that understates the size is still caught.
                data = stream.read(MAX_MEMBER_BYTES + 1)
        except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as error:
            detail = f"member {name!r} is corrupt ({error})"
            raise ArchiveError(f"{self.label}: {detail}", detail) from error
        _check_size(self.label, name, len(data))
        return data

    def close(self) -> None:
        self._zip.close()


class _FolderContainer(_Container):
    """An extracted folder; symbolic links inside it are followed only within `boundary` (walk_folder)."""

    def __init__(self, path: Path, boundary: Path):
        self.label = str(path)
        self.sizes = {}
        # Members are read from the real path found while listing, so the bytes read are the bytes listed.
        self._paths: dict[str, str] = {}
        for found in walk_folder(path, boundary, self.label):
            validate_member_path(self.label, found.name)
            if not is_packaging(found.name):
                self.sizes[found.name] = found.size
                self._paths[found.name] = found.path

    def read(self, name: str) -> bytes:
        return _read_file_capped(self.label, name, self._paths[name])


class _FileContainer(_Container):
    """A single plain file (CSXA's datasets.xlsx) exposed under its own name."""

    def __init__(self, path: Path, boundary: Path):
        self.label = str(path)
        self._path = follow_inside(boundary, path, path.name, self.label)
        self.sizes = {path.name: self._path.stat().st_size}

    def read(self, name: str) -> bytes:
        return _read_file_capped(self.label, name, self._path)


def _read_file_capped(label: str, name: str, path: str | os.PathLike) -> bytes:
    _check_size(label, name, os.stat(path).st_size)
    with open(path, "rb") as stream:
        data = stream.read(MAX_MEMBER_BYTES + 1)
    _check_size(label, name, len(data))
    return data


@dataclass(frozen=True)
class _Mount:
    """Where a logical member lives: a container and the member's name inside it."""

    container: _Container
    name: str


def _top_folder(names: list[str]) -> str | None:
    """The single folder every name sits in, or None (a file at the root, or several folders)."""
    tops = {name.split("/", 1)[0] for name in names}
    if len(tops) == 1 and all("/" in name for name in names):
        return tops.pop()
    return None


def _strip_single_top_folders(names: list[str], is_root) -> str:
    """Prefix (ending in '/', or '') of the dataset root inside a container.

    Single top folders are stripped (repeatedly: a doubled `BUU-LSPINE_400/BUU-LSPINE_400` is seen in the
    wild) until `is_root(names)` recognises the dataset root or the names no longer share one folder.
    """
    prefix = ""
    current = names
    while current and not is_root(current):
        top = _top_folder(current)
        if top is None:
            break
        prefix += top + "/"
        current = [name[len(top) + 1 :] for name in current]
    return prefix


def _has_root_file(names: list[str], file_name: str) -> bool:
    return file_name in names


def _has_root_folder(names: list[str], folders: tuple[str, ...]) -> bool:
    return any(name.split("/", 1)[0] in folders and "/" in name for name in names)


# How each source recognises its dataset root among member names.
_ROOT_MARKERS = {
    "rsna": lambda names: (
        _has_root_file(names, "train_label_coordinates.csv") or _has_root_file(names, "train.csv")
    ),
    "vindr": lambda names: _has_root_folder(names, ("annotations",)),
    "buu": lambda names: _has_root_folder(names, ("AP", "LA")),
}
_ROOT_DESCRIPTIONS = {
    "rsna": "train.csv or train_label_coordinates.csv",
    "vindr": "annotations/",
    "buu": "AP/ or LA/",
}


def _has_root_file_of_type(suffix: str):
    """Root marker of a CSXA part: a file with the part's suffix directly at the root."""
    return lambda names: any("/" not in name and name.lower().endswith(suffix) for name in names)


class SourceArchive:
    """A source's raw files as one read-only archive with validated member paths.

    Members are relative POSIX paths below the dataset root (see docs/contracts.md "Raw archive access").
    Use as a context manager so zip handles are closed.
    """

    def __init__(self, source: str, label: str, mounts: dict[str, _Mount], containers: list[_Container]):
        self.source = source
        self.label = label
        self._mounts = mounts
        self._containers = containers

    def __enter__(self) -> SourceArchive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for container in self._containers:
            container.close()

    def members(self) -> list[str]:
        """Every file of the dataset, sorted."""
        return sorted(self._mounts)

    def __contains__(self, member: str) -> bool:
        return member in self._mounts

    def _mount(self, member: str) -> _Mount:
        try:
            return self._mounts[member]
        except KeyError:
            detail = f"member {member!r} not found"
            raise ArchiveError(f"{self.label}: {detail}", detail) from None

    def size(self, member: str) -> int:
        """Uncompressed size of `member` in bytes (as recorded in the zip header or on disk)."""
        mount = self._mount(member)
        return mount.container.sizes[mount.name]

    def sizes(self) -> list[tuple[str, int]]:
        """(member, size) for every member, sorted by member."""
        return [(member, self.size(member)) for member in self.members()]

    def read(self, member: str) -> bytes:
        """The bytes of `member`; ArchiveError if it is missing or over MAX_MEMBER_BYTES."""
        mount = self._mount(member)
        return mount.container.read(mount.name)


def _open_container(path: Path, boundary: Path) -> _Container:
    if path.is_dir():
        return _FolderContainer(path, boundary)
    return _ZipContainer(path)


def _mounts_below(container: _Container, prefix: str, member_prefix: str = "") -> dict[str, _Mount]:
    """Mount every name of `container` under `prefix` as `member_prefix` + the rest of the name."""
    mounts = {}
    for name in container.sizes:
        if name.startswith(prefix):
            mounts[member_prefix + name[len(prefix) :]] = _Mount(container, name)
    return mounts


def _visible_entries(folder: Path) -> list[Path]:
    """Entries of a folder, without hidden files (`.DS_Store`, `.gitkeep`, ...)."""
    return sorted(entry for entry in folder.iterdir() if not entry.name.startswith("."))


def _find_packaged_archive(source: str, folder: Path, boundary: Path) -> Path | None:
    """The source's zip inside `folder`: a known archive name, else the folder's only entry if it is a zip.

    A zip reached through a link must lie inside `boundary`, like any other file of the configured folder.
    """
    candidates = [folder / name for name in ARCHIVE_NAMES.get(source, ()) if (folder / name).is_file()]
    if not candidates:
        entries = _visible_entries(folder)
        if len(entries) == 1 and entries[0].is_file() and zipfile.is_zipfile(entries[0]):
            candidates = entries
    if not candidates:
        return None
    follow_inside(boundary, candidates[0], candidates[0].name, str(folder))
    return candidates[0]


def _open_single_archive(source: str, path: Path) -> SourceArchive:
    """Resolve RSNA, VinDr or BUU: a zip, an extracted folder, or a folder that holds the zip."""
    is_root = _ROOT_MARKERS[source]
    boundary = real_path(path)
    if path.is_dir():
        packaged = _find_packaged_archive(source, path, boundary)
        if packaged is not None:
            path = packaged
    container = _open_container(path, boundary)
    names = list(container.sizes)
    prefix = _strip_single_top_folders(names, is_root)
    rooted = [name[len(prefix) :] for name in names if name.startswith(prefix)]
    if not is_root(rooted):
        container.close()
        raise ArchiveError(
            f"{path}: no {source} dataset root found (expected {_ROOT_DESCRIPTIONS[source]} at the top, "
            f"possibly under single top folders)"
        )
    return SourceArchive(source, str(path), _mounts_below(container, prefix), [container])


def _csxa_root(path: Path, boundary: Path) -> Path:
    """The folder holding CSXA's files: `path` or, if it only wraps one folder, that folder (repeatedly)."""
    if not path.is_dir():
        raise ArchiveError(
            f"{path}: CSXA needs the folder holding datasets-PNG, datasets-JSON and datasets.xlsx"
        )
    folder = path
    while not (folder / CSXA_SHEET).exists():
        entries = _visible_entries(folder)
        if len(entries) != 1 or not entries[0].is_dir():
            raise ArchiveError(f"{path}: {CSXA_SHEET} not found (CSXA needs PNG, JSON and xlsx side by side)")
        follow_inside(boundary, entries[0], entries[0].relative_to(path).as_posix(), str(path))
        folder = entries[0]
    return folder


def _open_csxa_part(root: Path, part: str, boundary: Path) -> tuple[_Container, dict[str, _Mount]]:
    """Mount datasets-PNG or datasets-JSON (zip or extracted folder) as `{part}/{stem}{suffix}`."""
    candidates = [root / f"{part}.zip", root / part]
    location = next((candidate for candidate in candidates if candidate.exists()), None)
    if location is None:
        raise ArchiveError(f"{root}: neither {part}.zip nor {part}/ found")
    follow_inside(boundary, location, location.name, str(root))
    container = _open_container(location, boundary)
    prefix = _strip_single_top_folders(list(container.sizes), _has_root_file_of_type(CSXA_PARTS[part]))
    return container, _mounts_below(container, prefix, member_prefix=f"{part}/")


def _open_csxa(path: Path) -> SourceArchive:
    boundary = real_path(path)
    root = _csxa_root(path, boundary)
    containers: list[_Container] = []
    mounts: dict[str, _Mount] = {}
    try:
        for part in CSXA_PARTS:
            container, part_mounts = _open_csxa_part(root, part, boundary)
            containers.append(container)
            mounts.update(part_mounts)
        sheet = _FileContainer(root / CSXA_SHEET, boundary)
        containers.append(sheet)
        mounts[CSXA_SHEET] = _Mount(sheet, CSXA_SHEET)
    except BaseException:
        for container in containers:
            container.close()
        raise
    return SourceArchive("csxa", str(root), mounts, containers)


def open_source(source: str, path: str | os.PathLike) -> SourceArchive:
    """Open the raw archive of `source` at `path` (zip, extracted folder, or folder holding either)."""
    path = Path(path)
    if not path.exists():
        raise ArchiveError(f"{path}: {source} archive path does not exist")
    if source == "csxa":
        return _open_csxa(path)
    if source not in _ROOT_MARKERS:
        raise ArchiveError(f"unknown source {source!r}")
    return _open_single_archive(source, path)


def read_csv_member(
    archive: SourceArchive, member: str, header: bool = True, line_column: str | None = None
) -> pd.DataFrame:
    """Parse a CSV member into a DataFrame whose columns are all strings; empty cells become missing.

    Only empty cells count as missing: literal text such as `NA` stays a string for the SQL to judge.
    Lines with no values are skipped. With `line_column`, each row carries its 1-based line number in the
    file (header = line 1), so a rejected row can be found in an editor (quoted line breaks would shift it;
    the source CSVs have none). Raises ArchiveError naming the member if it is not a parseable UTF-8 CSV.
    """
    import pandas as pd

    data = archive.read(member)
    try:
        frame = pd.read_csv(
            io.BytesIO(data),
            dtype=str,
            header=0 if header else None,
            keep_default_na=False,
            na_values=[""],
            skip_blank_lines=False,
            encoding="utf-8-sig",
        )
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise ArchiveError(f"{archive.label}: cannot parse CSV member {member!r} ({error})") from error
    if not header:
        frame.columns = [str(column) for column in frame.columns]
    if line_column is not None:
        if line_column in frame.columns:
            raise ArchiveError(f"{archive.label}: CSV member {member!r} already has a column {line_column!r}")
        first_line = 2 if header else 1
        frame.insert(0, line_column, range(first_line, first_line + len(frame)))
    blank = frame.drop(columns=[line_column] if line_column else []).isna().all(axis=1)
    return frame[~blank].reset_index(drop=True)
