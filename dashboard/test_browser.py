"""The page in a real browser: Streamlit serves it headless, Selenium drives
Debian's Chromium through Debian's chromium-driver, signs in as the admin,
the viewer member and the outsider, waits for the charts to render, saves a
screenshot of each (PG_AUDIENCE_SCREENSHOTS, default a temporary folder) and
reads the page as its visitor would."""

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conftest import ADMIN_ONLY, NEVER_SHOWN

HERE = os.path.dirname(os.path.abspath(__file__))
SHOTS = os.environ.get("PG_AUDIENCE_SCREENSHOTS") or tempfile.mkdtemp(prefix="dashboard-shots-")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def page_url():
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless=true",
         f"--server.port={port}", "--server.address=127.0.0.1", "--browser.gatherUsageStats=false"],
        cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the page did not start")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    # No sandbox as root; no background connections (the machine may have no network).
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-quic", "--window-size=1400,3200",
                f"--user-data-dir={tempfile.mkdtemp(prefix='dashboard-chromium-')}"]:
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()


def visit(browser, url, person, charts):
    """Opens the page signed in as `person` and waits until it has run and
    `charts` charts have been drawn. Returns the page's visible text and
    its whole HTML."""
    browser.get(f"{url}/?as={person}")

    def ready(driver):
        text = driver.find_element(By.TAG_NAME, "body").text
        drawn = driver.find_elements(By.CSS_SELECTOR, ".vega-embed canvas, .vega-embed svg.marks")
        running = driver.find_elements(By.CSS_SELECTOR, "[data-testid='stStatusWidget']")
        return "Signed in as" in text and len(drawn) >= charts and not running

    WebDriverWait(browser, 90, poll_frequency=0.5).until(ready)
    time.sleep(1)  # the last chart's transition
    browser.save_screenshot(os.path.join(SHOTS, f"dashboard-{person}.png"))
    return browser.find_element(By.TAG_NAME, "body").text, browser.page_source


def test_the_admin_sees_the_private_app(browser, page_url):
    text, html = visit(browser, page_url, "admin", charts=4)
    assert "Signed in as ada@acme.example" in text
    assert "payroll (private)" in text and "sales (public)" in text
    assert "Monthly unique viewers" in text and "Sessions per day" in text and "Top viewers" in text
    assert "pat.payroll@acme.example" in text, "the admin sees who opened the private app"
    for secret in NEVER_SHOWN:
        assert secret not in html, secret


def test_the_viewer_member_does_not(browser, page_url):
    text, html = visit(browser, page_url, "viewer", charts=4)
    assert "Signed in as vic@acme.example" in text
    assert "sales (public)" in text
    for secret in NEVER_SHOWN + ADMIN_ONLY:
        assert secret not in html, secret


def test_the_outsider_sees_nothing(browser, page_url):
    text, html = visit(browser, page_url, "outsider", charts=0)
    assert "Nothing to show" in text
    assert not browser.find_elements(By.CSS_SELECTOR, ".vega-embed")
    for secret in NEVER_SHOWN + ADMIN_ONLY + ["sales", "ada@acme.example"]:
        assert secret not in html, secret
