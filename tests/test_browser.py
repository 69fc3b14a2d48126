"""The demo in a real browser: headless Chromium (Debian's package) driven by Playwright.

Starts `cnnvit demo` on a free localhost port over the shared tiny run, uploads an image, reads
both models' top-5 tables from the page and compares them with `predict_both`, checks that a
file that is not an image gets a clear message, and saves a screenshot. Playwright's own browser
download cannot run here, so the test uses /usr/bin/chromium (`.ci/run` installs it with apt).
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
from hands_on import hands_on_run
from test_demo import digit_png

from cnnvit.demo import predict_both
from cnnvit.evidence import cell_from_run, judge_claims
from cnnvit.runs import load_run

pytestmark = pytest.mark.slow  # `make test-fast` leaves these out

CHROMIUM = Path("/usr/bin/chromium")
# A copy of the screenshot goes to $CNNVIT_SCREENSHOT_DIR when set, for a person to look at.
_SHOTS = os.environ.get("CNNVIT_SCREENSHOT_DIR")
NOTES = Path(_SHOTS) if _SHOTS else None
if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium", allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install -e .[dev])")
pytest.importorskip("gradio", reason="needs gradio (pip install -e .[dev])")

TIMEOUT_MS = 60_000  # a loaded 2-core machine can take seconds per request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    from cnnvit.demo.app import launch

    run_dir = hands_on_run(tmp_path_factory).path
    port = free_port()
    app = launch(run_dir, host="127.0.0.1", port=port, device="cpu", block=False)
    yield run_dir, f"http://127.0.0.1:{port}/"
    app.close()


@pytest.fixture(scope="module")
def page(served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--no-proxy-server"],
        )  # fmt: skip
        tab = browser.new_page(viewport={"width": 1280, "height": 900})
        tab.requested = []  # every URL the page asks for: all must stay on this machine
        tab.on("request", lambda request: tab.requested.append(request.url))
        tab.set_default_timeout(TIMEOUT_MS)
        tab.goto(served[1])
        tab.wait_for_selector("#upload")
        yield tab
        browser.close()


def upload(page, path: Path) -> None:
    """Put a file into the upload box (clearing the previous one, which hides the input)."""
    clear = page.locator("#upload button[aria-label=Clear]")
    if clear.count():
        clear.first.click()
    page.locator("#upload input[type=file]").set_input_files(str(path))


def wait_for_message(page, text: str) -> str:
    page.wait_for_function(
        "text => (document.querySelector('#message')?.innerText || '').includes(text)", arg=text
    )
    return page.locator("#message").inner_text()


def read_table(page, family: str) -> list[tuple[str, float]]:
    """(class, probability) rows of one model's top-5 table on the page."""
    rows = page.locator(f"#{family}-top table tbody tr")
    rows.first.wait_for()
    out = []
    for index in range(rows.count()):
        cells = rows.nth(index).locator("td").all_inner_texts()
        out.append((cells[1].strip(), float(cells[2])))
    return out


def test_upload_shows_both_models_predictions(served, page, tmp_path) -> None:
    run_dir, _ = served
    image = digit_png(tmp_path / "upload-digit.png", index=7)
    upload(page, image)
    wait_for_message(page, "Classified the upload upload-digit.png (64x64 pixels)")
    expected = predict_both(run_dir, image)
    for family in ("cnn", "vit"):
        shown = read_table(page, family)
        wanted = [(item["label"], item["probability"]) for item in expected[family]["top"]]
        assert [label for label, _ in shown] == [label for label, _ in wanted]
        for (_, on_page), (_, api) in zip(shown, wanted, strict=True):
            assert on_page == pytest.approx(api, abs=5.1e-5)  # the page shows 4 decimals
        assert page.locator(f"#{family}-map img").count() == 1  # the explanation map is drawn
    assert "McNemar's exact test" in page.locator("#findings").inner_text()
    verdicts = judge_claims([cell_from_run(load_run(run_dir))])
    rows = page.locator("#verdicts table tbody tr")
    assert rows.count() == len(verdicts)
    assert rows.first.locator("td").first.inner_text() == verdicts[0].statement
    # Offline: the page's scripts, styles and fonts all come from the demo itself.
    assert page.requested
    assert all(url.startswith(("http://127.0.0.1:", "data:", "blob:")) for url in page.requested)
    shot = tmp_path / "demo-screenshot.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if NOTES is not None and NOTES.is_dir():
        shutil.copy(shot, NOTES / "demo-screenshot.png")


def test_a_file_that_is_not_an_image_gets_a_clear_message(page, tmp_path) -> None:
    fake = tmp_path / "holiday.png"
    fake.write_text("this is text, not a picture")
    upload(page, fake)
    message = wait_for_message(page, "not an image")
    assert "holiday.png is not an image this demo can read" in message
    assert page.locator("#cnn-top table").count() == 0  # the old predictions are cleared


def test_picking_a_test_image_classifies_it(served, page) -> None:
    """The picker offers the run's first test images; choosing #2 shows what predict_both says
    for that test image (decoded the way the run decoded it)."""
    run_dir, _ = served
    run = load_run(run_dir)
    data = run.prepare_data()
    processor = run.models["cnn"].load()[1]
    images, labels = data.tensors("test", processor)
    page.locator("#picker input").click()
    page.get_by_role("option", name="#2: ").click()
    true_class = data.class_names[int(labels[2])]
    wait_for_message(page, f"Classified test image #2 (true class {true_class})")
    expected = predict_both(run_dir, images[2].permute(1, 2, 0).numpy())
    for family in ("cnn", "vit"):
        shown = read_table(page, family)
        assert [label for label, _ in shown] == [item["label"] for item in expected[family]["top"]]


def test_two_visitors_at_once_each_get_their_own_answer(served, page, tmp_path) -> None:
    """Two tabs upload different digits at the same moment; the queue serves both, and each tab
    shows the predictions for its own image."""
    run_dir, url = served
    other = page.context.browser.new_page(viewport={"width": 1280, "height": 900})  # a 2nd visitor
    other.set_default_timeout(TIMEOUT_MS)
    other.goto(url)
    other.wait_for_selector("#upload")
    images = {0: digit_png(tmp_path / "zero.png", index=0), 1: digit_png(tmp_path / "one.png", 1)}
    tabs = {0: page, 1: other}
    for number, tab in tabs.items():  # both requests are in flight before either is read
        upload(tab, images[number])
    for number, tab in tabs.items():
        wait_for_message(tab, f"Classified the upload {images[number].name}")
        expected = predict_both(run_dir, images[number])
        for family in ("cnn", "vit"):
            shown = read_table(tab, family)
            assert [label for label, _ in shown] == [i["label"] for i in expected[family]["top"]]
            assert shown[0][1] == pytest.approx(expected[family]["top"][0]["probability"], abs=6e-5)
    other.close()
