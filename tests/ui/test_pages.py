"""The dashboard in-process: the key cookie (login, refusals, no key in any URL), tenant isolation, what a
job page shows, every user-provided string escaped, and /ui absent from the OpenAPI document."""
from __future__ import annotations

import hashlib

from sqlalchemy import update

from app.core.db import session_scope
from app.models import Artifact, Job
from tests.api.helpers import auth
from tests.conftest import new_tenant
from tests.sse import parse
from tests.ui.conftest import UI_COOKIE, create_queued_job, log_in

HOSTILE = '<script>alert("x")</script>'


def test_without_a_key_every_page_sends_the_browser_to_the_login_form(browser_client):
    for path in ("/ui", "/ui/jobs/ftjob-x", "/ui/jobs/ftjob-x/curves.png"):
        response = browser_client.get(path)
        assert response.status_code == 303 and response.headers["location"] == "/ui/login", path
    form = browser_client.get("/ui/login")
    assert form.status_code == 200 and 'type="password"' in form.text
    assert "script-src 'self'" in form.headers["content-security-policy"]


def test_login_keeps_the_key_in_a_strict_http_only_cookie_never_in_a_url(browser_client, tenant):
    _, key = tenant
    response = log_in(browser_client, key)
    assert response.status_code == 303 and response.headers["location"] == "/ui"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{UI_COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Path=/ui" in cookie and key not in response.headers["location"]
    assert browser_client.get("/ui").status_code == 200
    logged_out = browser_client.post("/ui/logout", headers={"Origin": str(browser_client.base_url)})
    assert logged_out.status_code == 303 and f'{UI_COOKIE}=""' in logged_out.headers["set-cookie"]


def test_wrong_keys_and_other_sites_are_refused(browser_client, database):
    from app.tenants.service import create_api_key

    assert log_in(browser_client, "tf-wrong").status_code == 401
    with session_scope() as db:
        admin_key = create_api_key(db, None, role="admin")
    refused = log_in(browser_client, admin_key)
    assert refused.status_code == 403 and "set-cookie" not in refused.headers
    _, key = new_tenant()
    elsewhere = browser_client.post("/ui/login", data={"api_key": key}, headers={"Origin": "https://evil.example"})
    assert elsewhere.status_code == 403 and "set-cookie" not in elsewhere.headers


def test_another_tenants_job_is_not_found_on_any_dashboard_route(browser_client, trained_job):
    _, key = new_tenant()
    log_in(browser_client, key)
    base = f"/ui/jobs/{trained_job.job_id}"
    for path in (base, f"{base}/curves.png", f"{base}/events", f"{base}/artifacts.tar", f"{base}/artifacts/manifest.json"):
        response = browser_client.get(path)
        assert response.status_code == 404 and "No such fine-tuning job" in response.text, path
    assert trained_job.job_id not in browser_client.get("/ui").text


def test_a_succeeded_job_shows_its_curves_and_downloads_its_artifacts(browser_client, trained_job):
    log_in(browser_client, trained_job.key)
    listing = browser_client.get("/ui")
    assert trained_job.job_id in listing.text and "succeeded" in listing.text and 'value="100"' in listing.text
    page = browser_client.get(f"/ui/jobs/{trained_job.job_id}")
    assert page.status_code == 200 and 'data-live="false"' in page.text
    assert f'src="/ui/jobs/{trained_job.job_id}/curves.png"' in page.text
    curves = browser_client.get(f"/ui/jobs/{trained_job.job_id}/curves.png")
    assert curves.status_code == 200 and curves.headers["content-type"] == "image/png"
    api = browser_client.get(f"/v1/fine_tuning/jobs/{trained_job.job_id}/artifacts", headers=auth(trained_job.key))
    for artifact in api.json()["data"]:
        assert f'href="/ui/jobs/{trained_job.job_id}/artifacts/{artifact["name"]}"' in page.text
    body = browser_client.get(f"/ui/jobs/{trained_job.job_id}/artifacts/curves.png").content
    assert hashlib.sha256(body).hexdigest() in page.text


def test_the_event_stream_follows_on_from_the_newest_event_the_page_showed(browser_client, trained_job):
    log_in(browser_client, trained_job.key)
    events = browser_client.get(f"/v1/fine_tuning/jobs/{trained_job.job_id}/events?limit=3",
                                headers=auth(trained_job.key)).json()["data"]
    stream = browser_client.get(f"/ui/jobs/{trained_job.job_id}/events?after={events[2]['id']}")
    assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
    messages = parse(stream.text)
    assert [m.id for m in messages if m.id] == [events[1]["id"], events[0]["id"]]
    assert messages[-1].event == "done"


def test_user_provided_strings_are_shown_escaped(browser_client, tenant, registered_tiny_model, quiet_queue):
    _, key = tenant
    job = create_queued_job(browser_client, key, registered_tiny_model, metadata={HOSTILE: HOSTILE})
    with session_scope() as db:  # the API refuses such a suffix; a row may still hold one (older rules)
        db.execute(update(Job).where(Job.id == job["id"]).values(suffix=HOSTILE))
        db.add(Artifact(job_id=job["id"], name=f"{HOSTILE}.bin", bytes=1, sha256="0" * 64))
    log_in(browser_client, key)
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
    for page in (browser_client.get("/ui"), browser_client.get(f"/ui/jobs/{job['id']}")):
        assert page.status_code == 200 and escaped in page.text
        assert "<script>alert" not in page.text


def test_the_dashboard_is_not_part_of_the_api_schema(client):
    assert not [path for path in client.get("/openapi.json").json()["paths"] if path.startswith("/ui")]
    assert "/v1/fine_tuning/jobs/{job_id}/curves.png" in client.get("/openapi.json").json()["paths"]
