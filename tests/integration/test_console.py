"""The web console in a real headless browser (Debian's chromium driven by Playwright) against the real stack.

Sign in, submit a text with a webhook, watch the job go queued → succeeded with no reload, open it and see
the score bars and the webhook attempt; another tenant's key sees none of it. A screenshot is saved under
var/test-artifacts/. The browser is installed with apt-get when missing; the tests skip, saying why, only if
that cannot be done.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.receiver import Receiver
from tests.support import Client, Stack, artifact, free_port, wait_for

# A 1 s heartbeat: a closed page's stream ends within a second, so the API stops at once at module end.
ENV = {
    "ASSAY_WEBHOOK_ALLOW_PRIVATE": "true",
    "ASSAY_WEBHOOK_TIMEOUT_SECONDS": "2",
    "ASSAY_EVENTS_HEARTBEAT_SECONDS": "1",
}
TEXT = "I love this product, it works great and I am very happy with it"


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found and shutil.which("apt-get") and os.geteuid() == 0:
        quiet = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for step in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
            subprocess.run(step, capture_output=True, timeout=900, check=False, env=quiet)
        found = shutil.which("chromium")
    if not found:
        pytest.skip("chromium is not installed and apt-get could not install it: no browser to drive")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright (requirements-dev.txt) missing")
    executable = _chromium()
    with playwright_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def console_url(stack: Stack) -> str:
    stack.worker("console", **ENV)
    stack.webhooks(**ENV)
    return stack.api(**ENV)[1]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver(free_port()).start()
    yield receiver
    receiver.stop()


def _sign_in(browser, url: str, key: str):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    response = page.goto(f"{url}/console")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp, csp
    page.fill("#api-key", key)
    page.click("#sign-in button[type=submit]")
    page.wait_for_selector("#app-view:not([hidden])")
    page.wait_for_selector("#live.on")
    return context, page


def test_sign_in_submit_watch_open_and_isolation(browser, console_url: str, receiver: Receiver, new_key) -> None:
    key_a, key_b = new_key(), new_key()
    context, page = _sign_in(browser, console_url, key_a)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    # Every status the job's row shows, recorded in the page as the DOM changes (no polling from here).
    page.evaluate(
        """() => { window.seen = [];
        new MutationObserver(() => { for (const row of document.querySelectorAll('#jobs tbody tr'))
            if (window.seen.at(-1) !== row.dataset.status) window.seen.push(row.dataset.status); })
        .observe(document.querySelector('#jobs tbody'), {subtree: true, childList: true, attributes: true}); }"""
    )

    page.select_option("#analysis", "sentiment")
    page.fill("#text", TEXT)
    page.fill("#webhook", f"{receiver.url}/ok/console")
    page.click("#submit button[type=submit]")
    page.wait_for_selector("#jobs tbody tr[data-status=succeeded]", timeout=60_000)
    job_id = page.get_attribute("#jobs tbody tr", "data-id")
    seen = page.evaluate("window.seen")
    assert seen[0] == "queued" and seen[-1] == "succeeded", seen
    assert navigations == [], f"the page reloaded: {navigations}"

    page.wait_for_selector("#detail-status.status-succeeded")
    assert page.text_content("#detail-id") == job_id
    bars = page.query_selector_all("#bars .bar")
    assert {b.get_attribute("data-label") for b in bars} == {"positive", "negative", "neutral"}
    assert page.get_attribute("#bars .bar.top", "data-label") == "positive"
    page.wait_for_selector("#attempts tr.attempt", timeout=30_000)
    attempt = page.text_content("#attempts tr.attempt")
    assert "job.succeeded" in attempt and "204" in attempt, attempt
    stats = Client(console_url, key_a).get("/v1/stats")
    assert stats.status_code == 200, stats.text
    assert stats.json()["finished_last_minute"] >= 1, stats.json()
    wait_for(lambda: page.text_content("#stat-throughput") not in ("–", "0"), 10, what="throughput on the glance bar")
    page.screenshot(path=str(artifact("console.png")), full_page=True)

    assert not any(key_a in url for url in [*requested, page.url]), "the API key went into a URL"
    assert page.evaluate("sessionStorage.getItem('assay.apiKey')") == key_a
    assert page.evaluate("localStorage.length") == 0 and context.cookies() == []

    # Another tenant: an empty list, and its live stream stays silent while tenant A works.
    other, page_b = _sign_in(browser, console_url, key_b)
    later = Client(console_url, key_a).submit("tenant A again, while B watches")
    assert (
        Client(console_url, key_a).get(f"/v1/jobs/{later['id']}", params={"wait": 20}).json()["status"] == "succeeded"
    )
    page.wait_for_selector(f"#jobs tbody tr[data-id='{later['id']}'][data-status=succeeded]")  # A's page saw it live
    assert page_b.query_selector_all("#jobs tbody tr") == []
    assert job_id not in page_b.content() and later["id"] not in page_b.content()
    other.close()

    # Delete from the console: the job shows as erased.
    page.click(f"#jobs tbody tr[data-id='{job_id}']")
    page.wait_for_selector("#detail-status.status-succeeded")
    page.click("#delete")
    page.wait_for_selector("#detail-error:has-text('erased')")
    assert Client(console_url, key_a).get(f"/v1/jobs/{job_id}").status_code == 410
    context.close()


def test_a_call_record_file_is_submitted_from_the_console(
    browser, console_url: str, stack: Stack, new_key, tmp_path
) -> None:
    """cdr_fraud was offered with a text box, and its submission refused ("needs input.cdr_base64"):
    a call-record analysis now gets the file picker and goes as an upload, like audio."""
    from bench.cdr_data import generate, write

    stack.tabular("console-tabular", ASSAY_WORKER_METRICS_PORT=str(free_port()), **ENV)
    columns, truth = generate(2000, sim_boxes=2, intensity=80, call_centres=1, auto_diallers=1, borderline=1, days=1)
    path = tmp_path / "calls.csv"
    write(columns, path)
    key = new_key()
    context, page = _sign_in(browser, console_url, key)
    page.select_option("#analysis", "cdr_fraud")
    assert page.is_hidden("#text-field") and page.is_visible("#file-field")
    assert "Call-record" in page.text_content("#file-label") and ".csv" in page.get_attribute("#file", "accept")
    page.set_input_files("#file", str(path))
    page.click("#submit button[type=submit]")
    page.wait_for_selector("#jobs tbody tr[data-status=succeeded]", timeout=60_000)
    assert page.text_content("#submit-error") == ""
    job_id = page.get_attribute("#jobs tbody tr", "data-id")
    context.close()
    result = Client(console_url, key).get(f"/v1/jobs/{job_id}").json()["result"]
    assert {caller["caller"] for caller in result["flagged_callers"]} == set(truth.sim_boxes), result["totals"]


def test_a_wrong_key_is_refused_on_the_sign_in_form(browser, console_url: str) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{console_url}/console")
    page.fill("#api-key", "assay_not-a-real-key")
    page.click("#sign-in button[type=submit]")
    page.wait_for_selector("#sign-in-error:has-text('invalid_api_key')")
    assert page.is_hidden("#app-view") and page.evaluate("sessionStorage.length") == 0
    context.close()


def test_a_job_that_changes_while_the_live_stream_connects_is_shown(browser, console_url: str, new_key) -> None:
    """The console listed the jobs, then opened the event stream from "now": a job made or finished in between
    was never shown (or stayed "queued" for ever). The stream's connection is held here until a job has been
    made and has finished; the page must show it once the stream is through."""
    key = new_key()
    context = browser.new_context()
    page = context.new_page()
    held: list[object] = []
    # Not continued: the request waits here. (A lambda: Playwright cannot wrap a builtin such as list.append.)
    page.route("**/v1/events*", lambda route: held.append(route))  # noqa: PLW0108
    page.goto(f"{console_url}/console")
    page.fill("#api-key", key)
    page.click("#sign-in button[type=submit]")
    page.wait_for_selector("#app-view:not([hidden])")
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(100)
    assert held, "the console never opened its event stream"
    page.wait_for_timeout(500)  # whatever the page does before its stream answers, it has done
    user = Client(console_url, key)
    job = user.submit("made while the console's stream was connecting")
    assert user.get(f"/v1/jobs/{job['id']}", params={"wait": 20}).json()["status"] == "succeeded"
    held[0].continue_()
    page.wait_for_selector(f"#jobs tbody tr[data-id='{job['id']}'][data-status=succeeded]", timeout=15_000)
    context.close()


def test_a_key_revoked_while_signed_in_returns_to_the_sign_in_form(browser, console_url: str, db) -> None:
    """A revoked key left the console "offline", retrying its stream every 15 s for ever with the
    key in session storage, and every action failing with invalid_api_key one by one."""
    from store.keys import create_key, revoke_key

    with db.begin() as conn:
        issued = create_key(conn, f"console-revoked-{secrets.token_hex(3)}")
    context, page = _sign_in(browser, console_url, issued.secret)
    with db.begin() as conn:
        assert revoke_key(conn, issued.key_id)
    # The stats refresh (every 5 s) asks again once the API's auth cache (10 s) has let the key go.
    page.wait_for_selector("#sign-in-view:not([hidden])", timeout=40_000)
    assert page.is_hidden("#app-view")
    assert "invalid_api_key" in page.text_content("#sign-in-error")
    assert page.evaluate("sessionStorage.getItem('assay.apiKey')") is None
    context.close()
