"""Inventories of extracted source folders: rewritten exactly when a file inside changed."""

from __future__ import annotations

import os

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


def test_symlinked_folders_are_listed(tmp_path):
    elsewhere = tmp_path / "big-disk" / "train_images"
    elsewhere.mkdir(parents=True)
    (elsewhere / "c.dicom").write_bytes(b"film c")
    folder = tmp_path / "vindr"
    folder.mkdir()
    (folder / "train_images").symlink_to(elsewhere)
    assert folder_listing(folder).startswith("train_images/c.dicom\t6\t")
