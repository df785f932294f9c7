"""The page at / in a real headless Chromium (Debian's chromium and chromium-driver), via Selenium.

Skipped only when Chromium or its driver is missing; `.ci/run` installs them.
`JAXGAN_UPDATE_SCREENSHOT=1` writes the screenshot to docs/serve_page.png.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import urllib.parse

import pytest

from tests.helpers.serving import REPO_ROOT, get, serve, tiny_config, write_checkpoint

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="Chromium is not installed: apt-get install chromium chromium-driver",
    ),
]
PAD, SIZE = 2, 28
WAIT_SECONDS = 120


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    write_checkpoint(workdir, tiny_config(conditional=True, ema=True), 7)
    with serve(workdir, log_path=tmp_path_factory.mktemp("logs") / "server.log") as port:
        yield port


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver  # A missing selenium fails: only Chromium may skip.
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never reach for the network.
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1300,960",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium_profile')}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(WAIT_SECONDS)
    yield driver
    driver.quit()


def wait_for(driver, condition, message):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_SECONDS).until(lambda d: condition(d), message)


def image_bytes(driver, element_id: str) -> bytes:
    """The bytes the <img> shows (a blob: URL made from the server's response)."""
    encoded = driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch(document.getElementById(arguments[0]).src)
          .then((r) => r.arrayBuffer())
          .then((b) => done(btoa(String.fromCharCode(...new Uint8Array(b)))));""",
        element_id,
    )
    return base64.b64decode(encoded)


def loads(driver, element_id: str) -> int:
    return int(driver.find_element("id", element_id).get_attribute("data-loads") or 0)


def server_message(port: int, path: str) -> str:
    status, _, body = get(port, path)
    assert status == 422
    return json.loads(body)["error"]


def test_page_generates_walks_and_shows_the_servers_errors(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(f"http://127.0.0.1:{server}/")
    wait_for(browser, lambda d: loads(d, "grid") >= 1 and loads(d, "strip") >= 1, "no images")
    about = browser.find_element(By.ID, "about").text
    assert "checkpoint step 7" in about and "EMA weights" in about, about
    # The class select lists /healthz's class names (conditional model).
    label_select = Select(browser.find_element(By.ID, "label"))
    assert browser.find_element(By.ID, "label-field").is_displayed()
    assert [o.text for o in label_select.options][1:3] == ["0: T-shirt/top", "1: Trouser"]
    first = image_bytes(browser, "grid")
    assert first.startswith(b"\x89PNG")

    browser.find_element(By.ID, "generate").click()
    wait_for(browser, lambda d: loads(d, "grid") >= 2, "the grid did not reload")
    second = image_bytes(browser, "grid")
    assert second.startswith(b"\x89PNG") and second != first
    seed = browser.find_element(By.ID, "seed").get_attribute("value")
    status, _, body = get(server, f"/generate?n=16&seed={seed}")
    assert status == 200 and body == second, "the page does not show the server's grid"

    label_select.select_by_value("3")  # One class: the grid and the walk reload.
    wait_for(browser, lambda d: loads(d, "grid") >= 3, "the class did not apply")
    status, _, body = get(server, f"/generate?n=16&seed={seed}&label=3")
    assert body == image_bytes(browser, "grid")

    # The steps slider: the walk reloads with as many images as steps.
    strip_loads = loads(browser, "strip")
    browser.execute_script(
        "const s = document.getElementById('steps'); s.value = 20;"
        "s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change'));"
    )
    wait_for(browser, lambda d: loads(d, "strip") > strip_loads, "the walk did not reload")
    width = browser.execute_script("return document.getElementById('strip').naturalWidth")
    assert width == 20 * (SIZE + PAD) + PAD
    assert browser.find_element(By.ID, "steps-value").text == "20"

    screenshot = tmp_path / "serve_page.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("JAXGAN_UPDATE_SCREENSHOT") == "1":
        shutil.copy(screenshot, REPO_ROOT / "docs" / "serve_page.png")

    # Bad seeds: the page shows the server's own message.
    for bad in ("-5", "abc"):
        seed_input = browser.find_element(By.ID, "seed")
        seed_input.clear()
        seed_input.send_keys(bad)
        browser.find_element(By.ID, "show").click()
        expected = server_message(server, f"/generate?n=16&seed={urllib.parse.quote(bad)}&label=3")
        wait_for(browser, lambda d, e=expected: d.find_element(By.ID, "error").text == e, expected)
        assert "seed=" in expected and "allowed: an integer from 0 to 2147483647" in expected
