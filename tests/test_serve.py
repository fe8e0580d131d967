"""`vaur1 serve` in a real headless browser: upload a real mp4, read the analysis on the page; a file that
is not a video gets an error page. Chromium and its driver come from the test setup (`make test`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import VAUR1, run_cli
from engine_helpers import free_port

pytestmark = pytest.mark.browser


CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def server(eval_model: Path):
    port = free_port()
    process = subprocess.Popen(
        [
            str(VAUR1),
            "serve",
            "--model",
            f"tiny={eval_model}",
            "--port",
            str(port),
            "--max-new-tokens",
            "8",
            "--mode",
            "direct",
            "--device",
            "cpu",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    for _ in range(300):
        try:
            urllib.request.urlopen(url, timeout=1).read()
            break
        except OSError:
            if process.poll() is not None:
                raise AssertionError(process.stdout.read()) from None
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.skip("chromium and chromedriver are not installed (make test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def upload(browser, url: str, path: Path) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    browser.find_element(By.NAME, "video").send_keys(str(path))
    browser.find_element(By.ID, "go").click()
    WebDriverWait(browser, 120).until(
        lambda b: "analyze another video" in b.page_source or "error:" in b.page_source
    )
    return browser.find_element(By.TAG_NAME, "body").text


@pytest.mark.slow
def test_a_person_uploads_a_video_and_reads_its_analysis(
    server, browser, eval_model: Path, eval_synth: Path, tmp_path: Path
) -> None:
    clip = sorted((eval_synth / "videos").iterdir())[0]
    text = upload(browser, server, clip)
    for field in ("anomaly", "class", "interval", "description", "raw output: tag", "raw output: reasoning"):
        assert field in text, field
    # the page holds the model's own answers: those `vaur1 analyze` gives with the same settings
    flags = ["--model", str(eval_model), "--max-new-tokens", "8", "--mode", "direct", "--device", "cpu"]
    expected = json.loads(run_cli("analyze", str(clip), *flags, "--json", check=True).stdout)
    shown = " ".join(text.split())
    for task, output in expected["raw"].items():
        assert " ".join(output.split()) in shown, (task, output)
    assert f"anomaly {({True: 'yes', False: 'no', None: 'unreadable'})[expected['anomaly']]}" in shown
    assert browser.find_elements("css selector", ".strip img")  # the frames the model saw
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("just text")
    text = upload(browser, server, not_a_video)
    assert "error: notes.mp4: not a readable video file" in text
