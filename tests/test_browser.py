"""A real browser: headless Chromium (Playwright driving Debian's chromium) opens the app and runs the example clip.

Skipped when chromium or playwright is missing (.ci/run installs both).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")

import app  # noqa: E402
from tcve import ui  # noqa: E402
from tcve.service import Service  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FRAMES = 4
LIGHT = {"PTI passes": 1, "stitching steps": 1}


@pytest.fixture(scope="module")
def tickets() -> list:
    """The queue tickets the edit handler received (what lets Cancel drop a queued job)."""
    return []


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, tickets: list):
    dropped = ui.Runner._dropped

    def spy(runner: ui.Runner, session: str, ticket: object) -> bool:
        tickets.append(ticket)
        return dropped(runner, session, ticket)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ui.Runner, "_dropped", spy)
        demo = app.build_demo(Service("tiny", device="cpu", workdir=tmp_path_factory.mktemp("browser-outputs")))
        demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
        try:
            yield demo.local_url
        finally:
            demo.close()


def test_example_runs_in_chromium(url: str, tickets: list, tmp_path: Path) -> None:
    with playwright_api.sync_playwright() as pw:
        # a persistent context is how Playwright takes an explicit --user-data-dir
        browser = pw.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                        args=FLAGS, headless=True,
                                                        viewport={"width": 1400, "height": 1000})
        try:
            page = browser.new_page()
            page.goto(url)
            page.wait_for_selector("#banner", timeout=60_000)
            assert "tiny built-in random networks" in page.inner_text("#banner")
            page.get_by_label("frame cap (0: the preset's)").fill(str(FRAMES))
            page.keyboard.press("Tab")
            # the lightest settings through the advanced accordion (stitching dominates on a CPU)
            page.get_by_text("advanced settings").click()
            page.get_by_label("use these settings instead of the preset's").check()
            for label, value in LIGHT.items():
                page.get_by_label(f"number input for {label}").fill(str(value))
                page.keyboard.press("Tab")
            t0 = time.perf_counter()
            page.locator("#examples").get_by_text("astronaut").first.click()
            # the aligned face is shown before the long work starts, and no progress overlay covers it
            page.locator("#face-preview img").first.wait_for(state="visible", timeout=120_000)
            running = page.locator("#result-video video").count() == 0
            on_top = page.evaluate("""() => {
                const img = document.querySelector('#face-preview img');
                img.scrollIntoView({block: 'center'});
                const r = img.getBoundingClientRect();
                const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
                return top === img || img.contains(top);
            }""")
            overlay_elsewhere = page.locator("#result-video .wrap").count() > 0
            video = page.locator("#result-video video")
            video.wait_for(state="attached", timeout=240_000)
            page.wait_for_function(
                "() => { const v = document.querySelector('#result-video video'); return v && v.readyState >= 1; }",
                timeout=60_000)
            seconds = time.perf_counter() - t0
            duration = video.evaluate("v => v.duration")
            size = video.evaluate("v => [v.videoWidth, v.videoHeight]")
            face = page.locator("img").filter(has=page.locator("xpath=ancestor::*[@id]")).count()
            status = page.inner_text("#status")
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        finally:
            browser.close()
    print(f"example click -> result video: {seconds:.1f} s")
    assert (tmp_path / "app.png").stat().st_size > 10_000
    assert duration == pytest.approx(FRAMES / 25, abs=0.05)  # the example clip is 25 fps
    assert size == [320, 320]
    assert face >= 1
    assert running, "the run was over before the face preview could be checked"
    assert on_top, "something covers the aligned-face preview during the run"
    assert overlay_elsewhere  # progress still shows, on the result video
    assert f"{FRAMES} frames at 25 fps" in status
    assert "stitch" in status and "E_warp direct" in status
    assert len(tickets) == 1 and tickets[0] >= 1  # the browser sent the ticket its click took, with the inputs
