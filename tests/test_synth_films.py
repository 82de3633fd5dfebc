"""The synthetic radiographs have what the real VinDr-SpineXR and BUU-LSPINE films have (issue 6 facts)."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import JPEG2000Lossless

from spinebench.decode import RenderSettings
from spinebench.render import render_image
from spinebench.synth import buu, vindr

SEED = 20251014
FILMS = 24
DICOM = RenderSettings(512, (1.0, 99.0), "dicom", (0.5, 99.5))
PERCENTILE = RenderSettings(512, (1.0, 99.0), "percentile", (0.5, 99.5))


@pytest.fixture(scope="module")
def vindr_films() -> list[vindr.RenderedFilm]:
    return [vindr.render_film(SEED, plan) for plan in vindr.plan_films(SEED, FILMS)]


def header(film: vindr.RenderedFilm) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(film.dicom))


def test_vindr_films_are_jpeg2000_monochrome2_without_modality(vindr_films):
    for film in vindr_films[len(vindr.FIXED_FILMS) :]:
        dataset = header(film)
        assert dataset.file_meta.TransferSyntaxUID == JPEG2000Lossless
        assert dataset.PhotometricInterpretation == "MONOCHROME2"
        assert "Modality" not in dataset
    # The fixed films keep one uncompressed MONOCHROME1 film for the decoder's other paths.
    kinds = {
        (header(f).file_meta.TransferSyntaxUID, header(f).PhotometricInterpretation) for f in vindr_films
    }
    assert ("1.2.840.10008.1.2.1", "MONOCHROME1") in kinds


def test_vindr_windows_span_the_whole_12_bit_range(vindr_films):
    windows = {(float(header(f).WindowCenter), float(header(f).WindowWidth)) for f in vindr_films}
    assert (2047.5, 4095.0) in windows
    for center, width in windows:
        assert 2000 <= center <= 2150 and 3900 <= width <= 4095


def test_vindr_patient_fields_are_zero_and_one_film_has_a_pixel_aspect_ratio(vindr_films):
    datasets = [header(film) for film in vindr_films]
    assert {(str(d.PatientSize), str(d.PatientWeight)) for d in datasets} == {("0", "0")}
    with_ratio = [d for d in datasets if "PixelAspectRatio" in d]
    assert len(with_ratio) == 1 and with_ratio[0].SOPClassUID == "1.2.840.10008.5.1.4.1.1.1"  # CR


def test_some_vindr_films_have_black_collimation_borders_clear_of_every_box(vindr_films):
    collimated = 0
    for film in vindr_films:
        dataset = header(film)
        pixels = dataset.pixel_array
        dark = pixels >= 4095 - 80 if dataset.PhotometricInterpretation == "MONOCHROME1" else pixels <= 80
        edge_columns = dark.mean(axis=0) > 0.98
        if dark.mean() >= 0.08 and edge_columns[:3].all():
            collimated += 1
        for _, (xmin, ymin, xmax, ymax) in film.boxes:
            assert not dark[int(ymin) : int(ymax) + 1, int(xmin) : int(xmax) + 1].all(axis=0).any()
    assert 1 <= collimated <= FILMS // 2


def test_vindr_contrast_matches_the_real_films_under_both_windowings(vindr_films):
    """Real films: RMS contrast 0.22-0.27 under their full-range DICOM window, 0.28-0.31 stretched."""
    dicom = [render_image(f.dicom, "f.dicom", "X-ray", DICOM).quality["contrast"] for f in vindr_films]
    stretched = [
        render_image(f.dicom, "f.dicom", "X-ray", PERCENTILE).quality["contrast"] for f in vindr_films
    ]
    assert 0.19 <= np.median(dicom) <= 0.27 and 0.24 <= np.median(stretched) <= 0.32
    assert all(s > d for s, d in zip(stretched, dicom, strict=True))


def test_realistic_films_have_the_real_sizes():
    plan = vindr.plan_films(SEED, len(vindr.FIXED_FILMS) + 1)[-1]
    dataset = header(vindr.render_film(SEED, plan, "realistic"))
    assert 1485 <= dataset.Rows <= 2949 and dataset.Columns < dataset.Rows
    assert float(dataset.PixelSpacing[0]) == pytest.approx(0.139, rel=0.03)
    jpeg, _ = buu.render_view(SEED, buu.plan_cases(SEED, 1)[0], "LA", "realistic")
    width, height = Image.open(io.BytesIO(jpeg)).size
    assert 1823 <= width <= 2704 and 2147 <= height <= 3036
    with pytest.raises(ValueError, match="film_size"):
        vindr.film_shape(np.random.default_rng(0), "lumbar", "huge")


@pytest.fixture(scope="module")
def buu_views() -> list[tuple[Image.Image, list[tuple]]]:
    views = []
    for case in buu.plan_cases(SEED, 12):
        for view in ("AP", "LA"):
            jpeg, rows = buu.render_view(SEED, case, view)
            views.append((Image.open(io.BytesIO(jpeg)), rows))
    return views


def test_buu_films_are_8_bit_grey_jpegs_some_stored_as_rgb(buu_views):
    modes = [image.mode for image, _ in buu_views]
    assert set(modes) == {"L", "RGB"} and modes.count("RGB") < len(modes) // 2
    for image, _ in buu_views:
        assert image.format == "JPEG"
        if image.mode == "RGB":
            channels = np.asarray(image, dtype=np.int16)
            assert np.abs(channels[..., 0] - channels[..., 2]).max() <= 2  # grey stored in three channels


def test_buu_films_carry_burned_in_text_and_the_spine_spans_15_to_20_percent(buu_views):
    for image, rows in buu_views:
        grey = np.asarray(image.convert("L"))
        corner = grey[: grey.shape[0] // 15, : grey.shape[1] // 3]
        assert (corner >= 235).mean() > 0.005, "the burned-in id line"
        widest = max(abs(row[2] - row[0]) for row in rows)
        assert 0.12 <= widest / image.width <= 0.21
