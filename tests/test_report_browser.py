"""The HTML report in a real headless Chromium: it renders (screenshot), every image decodes, no request
leaves the page and a model response holding `<script>` or `onerror` markup runs nothing.

Skipped where no `chromium` is installed (Debian: `apt-get install chromium`).
"""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageStat

from tests.browser import Browser, find_chromium
from tests.test_report import HOSTILE, JUDGE_REPLY, inputs, run_report_script  # noqa: F401 (inputs is a fixture)

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

# Images the fixture's report holds: 2 disease distributions, the localization chart, 2 confusion matrices
# (one per model) and 4 example images (2 per task).
REPORT_IMAGES = 9

DECODE_IMAGES = """
Promise.all(Array.from(document.images, image => image.decode().then(
    () => ({src: image.src.slice(0, 24), width: image.naturalWidth, height: image.naturalHeight}),
    () => ({src: image.src.slice(0, 24), width: 0, height: 0}))))
"""


@pytest.fixture(scope="module")
def browser():
    with Browser(CHROMIUM) as running:
        yield running


@pytest.fixture(scope="module")
def report_page(inputs, tmp_path_factory):  # noqa: F811 (the imported fixture)
    return run_report_script(inputs, tmp_path_factory.mktemp("browser"))["html"]


def test_report_renders_offline_with_every_image_decoded(browser, report_page, tmp_path):
    url = report_page.as_uri()
    visit = browser.visit(url)
    assert [request for request in visit.requests if not request.startswith("data:")] == [url]
    images = browser.evaluate(DECODE_IMAGES)
    assert len(images) == REPORT_IMAGES
    assert all(image["width"] > 0 and image["height"] > 0 for image in images), images
    assert {image["src"][:15] for image in images} <= {"data:image/svg+", "data:image/jpeg"}
    assert visit.exceptions == [] and visit.dialogs == [] and visit.console == []
    screenshot = Image.open(io.BytesIO(browser.screenshot(tmp_path / "report.png").read_bytes()))
    assert screenshot.width == 1280 and screenshot.height > 3000
    assert ImageStat.Stat(screenshot.convert("L")).stddev[0] > 20  # not a blank page


def test_model_markup_runs_nothing_and_shows_as_text(browser, report_page):
    visit = browser.visit(report_page.as_uri())
    assert browser.evaluate("typeof window.__pwned") == "undefined"
    assert browser.evaluate("document.querySelectorAll('script').length") == 0
    assert browser.evaluate("Array.from(document.images).filter(i => !i.src.startsWith('data:')).length") == 0
    shown = browser.evaluate("Array.from(document.querySelectorAll('pre.response'), pre => pre.textContent)")
    assert any(HOSTILE in text for text in shown) and JUDGE_REPLY in shown
    assert visit.dialogs == [] and visit.exceptions == []


def test_checks_see_a_request_and_a_script_when_there_are_some(browser, tmp_path):
    """The harness itself: a page that fetches and scripts is caught (no request reaches a host: no DNS)."""
    page = tmp_path / "hostile.html"
    page.write_text(
        "<!DOCTYPE html><html><body><img src='http://report-check.invalid/x.png'>"
        "<script>window.__pwned = 1</script></body></html>",
        encoding="utf-8",
    )
    visit = browser.visit(page.as_uri())
    assert "http://report-check.invalid/x.png" in visit.requests
    assert browser.evaluate("window.__pwned") == 1
