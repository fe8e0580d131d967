"""Screenshots for the README and docs/, in headless Chromium (`apt-get install chromium chromium-driver`).

    .venv/bin/python docs/make_screenshots.py REPORT.html GALLERY.html MODEL_DIR VIDEO

Writes docs/images/report.png, gallery.png and serve.png: a comparison report, its gallery, and
`vaur1 serve` after an upload of VIDEO.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

IMAGES = Path(__file__).resolve().parent / "images"


def main(report: str, gallery: str, model: str, video: str) -> None:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1400"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    IMAGES.mkdir(exist_ok=True)
    for name, page in (("report", report), ("gallery", gallery)):
        driver.get(Path(page).resolve().as_uri())
        time.sleep(1)
        driver.save_screenshot(str(IMAGES / f"{name}.png"))
    vaur1 = Path(sys.executable).parent / "vaur1"
    server = subprocess.Popen(
        [str(vaur1), "serve", "--model", model, "--port", "7870", "--max-new-tokens", "64"]
    )
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen("http://127.0.0.1:7870/", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        driver.get("http://127.0.0.1:7870/")
        driver.find_element(By.NAME, "video").send_keys(str(Path(video).resolve()))
        driver.find_element(By.ID, "go").click()
        WebDriverWait(driver, 300).until(lambda d: "analyze another video" in d.page_source)
        driver.save_screenshot(str(IMAGES / "serve.png"))
    finally:
        server.terminate()
        driver.quit()


if __name__ == "__main__":
    main(*sys.argv[1:5])
