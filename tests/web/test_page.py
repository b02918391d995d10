"""The page at GET /, driven in a real headless browser (Debian's chromium, through Playwright).

Real servers on real ports load the embedded fingerprints; the images are real files from the
shared data, uploaded through the page's own file input. The chosen sd14 fake and CBSD68 photo
have clear verdicts from the API (family-wise p-values near 1e-44 and 1.0).

Set PAGE_SCREENSHOT=docs/page.png to refresh the README's screenshot from the results test.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from app.routes.page import STATIC
from testkit.paths import REPO
from testkit.servers import ThreadServer, make_settings

FAKE = REPO.parent / "shared" / "data" / "ltim" / "sd14" / "1_fake" / "img_628810.png"
REAL = REPO.parent / "shared" / "data" / "real" / "cbsd68" / "101085.png"
KEY = "page-test-key"
# No sandbox: the suite may run as root in a container. The rest keeps chromium off the network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is missing: run scripts/ci-deps.sh (installs the Debian `chromium` package)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def start(api_key: str | None) -> ThreadServer:
    # Three files a request at most: the results test sends three, the refusal test four.
    return ThreadServer(make_settings(REPO / "fingerprints", api_key=api_key, max_files_per_request=3)).start()


@pytest.fixture(scope="module")
def open_server() -> Iterator[ThreadServer]:
    server = start(None)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[ThreadServer]:
    server = start(KEY)
    yield server
    server.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh context per test: its own sessionStorage."""
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    yield context.new_page()
    context.close()


@pytest.fixture
def console_errors(page: Page) -> list[str]:
    """The page's console errors: a Content-Security-Policy violation is reported there."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    return errors


def until(page: Page, expression: str, timeout_s: float = 30) -> Any:
    """Poll a JavaScript expression. page.evaluate runs outside the page's CSP, unlike wait_for_function."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = page.evaluate(expression)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{expression} stayed false for {timeout_s}s")


def card(page: Page, filename: str) -> Any:
    return page.locator("article.result").filter(has=page.get_by_role("heading", name=filename, exact=True))


def tab_to(page: Page, element_id: str, presses: int = 6) -> None:
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == element_id:
            return
    raise AssertionError(f"#{element_id} is not reachable with {presses} presses of Tab")


def all_pictures_loaded(page: Page, count: int) -> None:
    until(page, f"(() => {{ const imgs = [...document.querySelectorAll('.pictures img')]; "
                f"return imgs.length === {count} && imgs.every(i => i.complete && i.naturalWidth > 0); }})()")


def test_the_page_needs_no_key_and_loads_nothing_from_elsewhere(keyed_server: ThreadServer) -> None:
    page = httpx.get(f"{keyed_server.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "img-src 'self' blob: data:" in policy
    for asset in ("ui/app.js", "ui/app.css"):
        assert f'"{asset}"' in page.text
        assert httpx.get(f"{keyed_server.url}/{asset}").status_code == 200
    # Everything the page needs is in the package: no URL of another origin anywhere in it.
    for path in STATIC.iterdir():
        assert not re.search(r"(https?:)?//[\w-]+\.", path.read_text()), path.name
    # The page being open does not open the API, and the offline docs still answer beside it.
    assert httpx.post(f"{keyed_server.url}/detect", files={"file": ("a.png", FAKE.read_bytes())}).status_code == 401
    assert httpx.get(f"{keyed_server.url}/docs").status_code == 200


def test_verdicts_bars_pictures_and_per_file_errors(open_server: ThreadServer, page: Page, console_errors: list[str],
                                                    tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    page.goto(f"{open_server.url}/")
    tab_to(page, "files")
    page.set_input_files("#files", [str(FAKE), str(REAL), str(notes)])
    expect(page.locator("#picked")).to_contain_text("3 images chosen")
    tab_to(page, "detect", 1)
    # The keyboard user sees where they are: the focus ring of the style sheet, not only the browser's.
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text("Checked 3 images", timeout=60_000)
    assert page.locator("#results").get_attribute("aria-live") == "polite"

    fake = card(page, FAKE.name)
    expect(fake.locator(".badge")).to_have_text("Fake")
    expect(fake.locator(".verdict")).to_contain_text("false-positive rate of 1 %")
    expect(fake.locator(".blame")).to_contain_text("sd14")
    expect(fake.locator(".bars li")).to_have_count(5)
    assert fake.locator(".bars li").first.locator(".name").inner_text() == "sd14"  # strongest first
    assert fake.locator(".bar.pass").count() >= 1
    assert float(fake.locator(".bar").first.evaluate("b => b.getBoundingClientRect().width")) > 100

    real = card(page, REAL.name)
    expect(real.locator(".badge")).to_have_text("No known generator")
    assert "verdict-fake" not in (real.get_attribute("class") or "")
    assert real.locator(".bar.pass").count() == 0 and real.locator(".pictures").count() == 0

    failed = card(page, notes.name)
    expect(failed).to_contain_text("not a recognised image")
    expect(failed).to_contain_text("HTTP 415")

    all_pictures_loaded(page, 2)
    assert fake.get_by_role("img", name="Fingerprint of sd14").get_attribute("src").startswith("blob:")
    assert console_errors == []
    shot = os.environ.get("PAGE_SCREENSHOT")
    page.screenshot(path=REPO / shot if shot else tmp_path / "page.png", full_page=True)


def test_the_key_is_sent_by_the_page_and_a_wrong_one_is_explained(keyed_server: ThreadServer, page: Page,
                                                                  console_errors: list[str]) -> None:
    page.goto(f"{keyed_server.url}/")
    page.fill("#api-key", "not-the-key")
    page.set_input_files("#files", [str(FAKE)])
    page.click("#detect")
    expect(page.get_by_role("alert")).to_contain_text("missing or wrong X-API-Key header (HTTP 401, unauthorized)")
    expect(page.get_by_role("alert")).to_contain_text("Enter the service's API key above.")

    page.fill("#api-key", KEY)
    page.click("#detect")
    expect(card(page, FAKE.name).locator(".badge")).to_have_text("Fake", timeout=60_000)
    # The PNG routes need the key too: these pictures came through fetch with the header.
    all_pictures_loaded(page, 2)
    # Kept for the tab, out of the address bar.
    assert page.evaluate("sessionStorage.getItem('dif-api-key')") == KEY and KEY not in page.url
    page.reload()
    assert page.input_value("#api-key") == KEY
    assert all("401" in error for error in console_errors), console_errors  # the refused request, nothing else


def test_too_many_files_are_refused_in_words(open_server: ThreadServer, page: Page) -> None:
    page.goto(f"{open_server.url}/")
    page.set_input_files("#files", [str(FAKE), str(REAL), str(FAKE.with_name("img_1265.png")),
                                    str(FAKE.with_name("img_107403.png"))])
    page.click("#detect")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("at most 3 files per request (DIF_MAX_FILES_PER_REQUEST) (HTTP 413, too_many_files)")
    expect(alert).to_contain_text("Send fewer or smaller images at a time.")
    expect(page.locator("#status")).to_have_text("The check failed; the reason is shown below.")
