"""Headless Chromium under Selenium, for the tests that look at pages as a person would."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1200,1000")


def chromium_driver(profile: Path, purpose: str):
    """A Chrome WebDriver on the Debian chromium, its profile in `profile`, the console logged.

    Fails (never skips) when the browser is missing: `make system-packages` installs it."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.fail(f"chromium and chromedriver are needed to {purpose}: run "
                    "`make system-packages` (installs the Debian chromium and chromium-driver "
                    "packages)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: run `make test` (installs the test extras)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
