"""Inventories of extracted source folders: rewritten exactly when a file inside changed."""

from __future__ import annotations

import os

import pytest

from spinebench.archive import ArchiveError, open_source
from spinebench.inventory import folder_listing, write_inventory


def test_inventory_is_rewritten_only_when_the_folder_changed(tmp_path):
    folder = tmp_path / "vindr"
    (folder / "train_images" / "nested").mkdir(parents=True)
    (folder / "train_images" / "a.dicom").write_bytes(b"film a")
    (folder / "train_images" / "nested" / "b.dicom").write_bytes(b"film b")
    inventory = tmp_path / "results" / "vindr.inventory.tsv"
    write_inventory(folder, inventory)
    lines = inventory.read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["train_images/a.dicom", "train_images/nested/b.dicom"]
    os.utime(inventory, (1_000_000, 1_000_000))
    write_inventory(folder, inventory)
    assert inventory.stat().st_mtime == 1_000_000  # nothing changed: not rewritten, so no rerun
    # A file edited in place changes neither the folder's nor its parent's mtime, but the inventory moves.
    film = folder / "train_images" / "nested" / "b.dicom"
    film.write_bytes(b"film b, edited")
    write_inventory(folder, inventory)
    assert inventory.stat().st_mtime != 1_000_000
    assert inventory.read_text() == folder_listing(folder)


def test_folders_linked_inside_the_dataset_are_listed_under_the_link_name(tmp_path):
    folder = tmp_path / "vindr"
    store = folder / "storage" / "train"
    store.mkdir(parents=True)
    (store / "c.dicom").write_bytes(b"film c")
    (folder / "train_images").symlink_to(store)
    inventory = tmp_path / "results" / "vindr.inventory.tsv"
    write_inventory(folder, inventory)
    assert [line.split("\t")[0] for line in inventory.read_text().splitlines()] == [
        "storage/train/c.dicom",
        "train_images/c.dicom",
    ]
    # Editing the film behind the link moves the inventory, so the jobs reading through the link rerun.
    os.utime(inventory, (1_000_000, 1_000_000))
    (store / "c.dicom").write_bytes(b"film c, edited")
    write_inventory(folder, inventory)
    assert inventory.stat().st_mtime != 1_000_000
    assert "train_images/c.dicom\t14\t" in inventory.read_text()


def test_a_link_leaving_the_folder_is_refused_before_any_job_runs(tmp_path):
    elsewhere = tmp_path / "big-disk" / "train_images"
    elsewhere.mkdir(parents=True)
    (elsewhere / "c.dicom").write_bytes(b"film c")
    folder = tmp_path / "vindr"
    folder.mkdir()
    (folder / "train_images").symlink_to(elsewhere)
    with pytest.raises(ArchiveError, match=f"train_images is a symbolic link to {elsewhere}, outside"):
        write_inventory(folder, tmp_path / "vindr.inventory.tsv")
    assert not (tmp_path / "vindr.inventory.tsv").exists()


def test_the_inventory_lists_exactly_the_files_the_archive_reads(tmp_path):
    folder = tmp_path / "vindr" / "vindr-spinexr-1.0.0"
    (folder / "annotations").mkdir(parents=True)
    (folder / "annotations" / "train.csv").write_text("image_id\n")
    (folder / "films").mkdir()
    (folder / "films" / "ab.dicom").write_bytes(b"d")
    (folder / "train_images").symlink_to("films")
    (folder / ".DS_Store").write_bytes(b"packaging")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref")
    os.mkfifo(folder / "films" / "pipe.dicom")
    with open_source("vindr", tmp_path / "vindr") as archive:
        members = archive.sizes()
    prefix = "vindr-spinexr-1.0.0/"
    listed = [line.split("\t") for line in folder_listing(tmp_path / "vindr").splitlines()]
    assert [(name.removeprefix(prefix), int(size)) for name, size, _ in listed] == members
    assert [name for name, _ in members] == [
        "annotations/train.csv",
        "films/ab.dicom",
        "train_images/ab.dicom",
    ]
