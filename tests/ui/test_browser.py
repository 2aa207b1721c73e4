"""The dashboard in headless Chromium (Debian's, driven by playwright) against real `tuneforge api` +
`tuneforge worker` processes: open it with a key, see the job list, open a running job and watch its
progress bar move with the live event stream, see its curves, and download an artifact."""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import auth, classification_rows, jsonl
from tests.conftest import new_tenant
from tests.e2e.conftest import wait_for

CHROMIUM = Path("/usr/bin/chromium")
# Chromium as the machine notes say it must start here: no sandbox as root, no GPU, nothing that dials
# out (this network refuses it); playwright gives it a fresh profile directory
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]
# Records every value the job page's progress bar takes, across the reload that follows the job's end
RECORD_PROGRESS = """
document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("job");
  if (!root || root.dataset.live !== "true") return;
  const bar = root.querySelector("progress.progress");
  new MutationObserver(() => {
    const seen = JSON.parse(sessionStorage.getItem("progress-seen") || "[]");
    sessionStorage.setItem("progress-seen", JSON.stringify([...seen, bar.value]));
  }).observe(bar, {attributes: true, attributeFilter: ["value"]});
});
"""


@pytest.fixture
def browser(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent: install Debian's chromium (apt-get install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=FLAGS,
            accept_downloads=True)
        context.set_default_timeout(60_000)
        yield context
        context.close()


def start_slow_job(url: str, key: str) -> str:
    """A tiny BitFit job with many short epochs, so it trains (and reports its steps) for some seconds."""
    with httpx.Client(base_url=url, headers=auth(key), timeout=60) as api:
        files = [api.post("/v1/files", data={"purpose": "fine-tune"},
                          files={"file": ("data.jsonl", io.BytesIO(jsonl(classification_rows(n))))}).json()["id"]
                 for n in (48, 8)]
        job = api.post("/v1/fine_tuning/jobs", json={
            "model": "tiny-bert", "training_file": files[0], "validation_file": files[1], "suffix": "ui-e2e",
            "method": {"type": "bitfit", "bitfit": {"hyperparameters": {"n_epochs": 30, "batch_size": 4}}}})
        assert job.status_code == 200, job.text
        return job.json()["id"]


def test_open_the_dashboard_watch_a_job_train_and_download_an_artifact(service, browser):
    _, key = new_tenant()
    job_id = start_slow_job(service.url, key)
    page = browser.new_page()
    page.add_init_script(RECORD_PROGRESS)

    page.goto(f"{service.url}/ui")
    assert page.url.endswith("/ui/login")
    page.fill("#api_key", key)
    page.click("button[type=submit]")
    row = page.locator(f"tr[data-job-id='{job_id}']")
    assert "ui-e2e" in row.inner_text() and "bitfit" in row.inner_text() and "tiny-bert" in row.inner_text()
    assert key not in page.url

    job_url = f"{service.url}/v1/fine_tuning/jobs/{job_id}"
    wait_for(lambda: httpx.get(job_url, headers=auth(key)).json()["status"], lambda s: s != "queued", timeout=120)
    row.locator("a").first.click()
    page.wait_for_url(f"**/ui/jobs/{job_id}")
    page.locator("#status", has_text="succeeded").wait_for(timeout=240_000)  # the page reloads at the end

    seen = page.evaluate("JSON.parse(sessionStorage.getItem('progress-seen') || '[]')")
    assert len(set(seen)) >= 2 and seen == sorted(seen) and any(0 < value < 100 for value in seen), seen
    assert page.locator("progress.progress").get_attribute("value") == "100"
    wait_for(lambda: page.evaluate("document.getElementById('curves').naturalWidth"), lambda w: w == 960, timeout=30)

    listed = {a["name"]: a for a in httpx.get(f"{job_url}/artifacts", headers=auth(key)).json()["data"]}
    with page.expect_download() as download:
        page.click("a[href$='/artifacts/curves.png']")
    body = Path(download.value.path()).read_bytes()
    assert hashlib.sha256(body).hexdigest() == listed["curves.png"]["sha256"]
    with page.expect_download() as download:
        page.click("a[href$='/artifacts/manifest.json']")
    assert Path(download.value.path()).stat().st_size == listed["manifest.json"]["bytes"]
