"""/v1/webhook_endpoints on the real app and database: OpenAI's shapes (checked with the `openai`
package's own types), the secret shown once, tenant isolation, and every refusal a 400 naming `url`."""
from __future__ import annotations

import json

import pytest
from openai.types.webhooks import DeletedWebhookEndpoint, WebhookEndpoint, WebhookEndpointWithSecret

from tests.api.helpers import assert_error, auth
from tests.conftest import new_tenant

BASE = "/v1/webhook_endpoints"


def create(client, key: str, **body):
    return client.post(BASE, headers=auth(key), json={"url": "http://127.0.0.1:9/hooks", **body})


def test_create_list_retrieve_delete_in_openai_shapes(client, tenant):
    _, key = tenant
    created = create(client, key, name="ci", event_types=["fine_tuning.job.succeeded"])
    assert created.status_code == 200, created.text
    endpoint = WebhookEndpointWithSecret.model_validate(created.json(), strict=True)
    assert endpoint.signing_secret.startswith("whsec_") and endpoint.event_types == ["fine_tuning.job.succeeded"]
    assert endpoint.signing_secret_hint == endpoint.signing_secret[:10] + "…" + endpoint.signing_secret[-4:]

    listed = client.get(BASE, headers=auth(key)).json()
    assert [e["id"] for e in listed["data"]] == [endpoint.id] and listed["has_more"] is False
    fetched = client.get(f"{BASE}/{endpoint.id}", headers=auth(key)).json()
    assert "signing_secret" not in fetched and "signing_secret" not in listed["data"][0]  # shown once
    WebhookEndpoint.model_validate(fetched, strict=True)

    deleted = client.delete(f"{BASE}/{endpoint.id}", headers=auth(key))
    assert DeletedWebhookEndpoint.model_validate(deleted.json(), strict=True).deleted
    assert_error(client.get(f"{BASE}/{endpoint.id}", headers=auth(key)), 404, "no such webhook endpoint")


def test_defaults_and_the_short_alias(client, tenant):
    _, key = tenant
    body = client.post("/v1/webhooks", headers=auth(key), json={"url": "http://localhost:9/x"}).json()
    assert body["event_types"] == ["fine_tuning.job.succeeded", "fine_tuning.job.failed", "fine_tuning.job.cancelled"]
    assert body["name"] == "localhost"
    assert client.get(f"/v1/webhooks/{body['id']}/deliveries", headers=auth(key)).json()["data"] == []


def test_another_tenants_endpoint_is_not_found(client, tenant):
    endpoint = create(client, tenant[1]).json()
    _, other = new_tenant()
    for response in (client.get(f"{BASE}/{endpoint['id']}", headers=auth(other)),
                     client.delete(f"{BASE}/{endpoint['id']}", headers=auth(other)),
                     client.get(f"{BASE}/{endpoint['id']}/deliveries", headers=auth(other))):
        assert_error(response, 404, "no such webhook endpoint", param="webhook_endpoint_id")
    assert client.get(BASE, headers=auth(other)).json()["data"] == []


def test_idempotency_key_replays_the_same_endpoint_and_secret(client, tenant):
    _, key = tenant
    headers = {**auth(key), "Idempotency-Key": "hook-1"}
    first = client.post(BASE, headers=headers, json={"url": "http://127.0.0.1:9/a"}).json()
    again = client.post(BASE, headers=headers, json={"url": "http://127.0.0.1:9/a"}).json()
    assert again == first
    assert_error(client.post(BASE, headers=headers, json={"url": "http://127.0.0.1:9/b"}), 409, "different request")


@pytest.mark.parametrize("url, fragment", [
    ("ftp://example.com/hook", "http:// or https://"),
    ("file:///etc/passwd", "http:// or https://"),
    ("example.com/hook", "http:// or https://"),
    ("http:///nohost", "a host name or ipv4 address"),
    ("http://user:pw@127.0.0.1/hook", "no credentials"),
    ("http://127.0.0.1:99999/hook", "an optional port"),
    ("http://[::1]/hook", "no ipv6 literal"),
    ("https://example.com/a b", "without spaces"),
    ("https://example.com/\u00e9t\u00e9", "printable ascii"),
    ("https://" + "a" * 2050 + ".com/", "2048"),
])
def test_bad_urls_are_400_naming_url(client, tenant, url, fragment):
    assert_error(create(client, tenant[1], url=url.encode().decode("unicode_escape")), 400, fragment, param="url")


def test_the_schema_carries_the_pattern_the_server_enforces(client):
    import re

    from app.webhooks.urls import URL_PATTERN

    body = client.get("/openapi.json").json()["components"]["schemas"]["CreateWebhookRequest"]["properties"]["url"]
    assert body["pattern"] == URL_PATTERN and body["maxLength"] == 2048
    assert re.fullmatch(URL_PATTERN, "HTTPS://hooks.example.com:8443/t?x=1#f")


def test_a_name_that_does_not_resolve_is_accepted_and_checked_at_send_time(client, tenant):
    assert create(client, tenant[1], url="https://no-such-host.invalid/hook").status_code == 200


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.1.2.3/hook",
                                 "http://192.168.0.10/", "http://169.254.169.254/latest/meta-data",
                                 "http://api.localhost/", "http://0.0.0.0/", "http://224.0.0.1/"])
def test_private_addresses_are_refused_unless_the_operator_allows_them(client, tenant, settings_override, url):
    settings_override(webhook_allow_private=False)
    error = assert_error(create(client, tenant[1], url=url), 400, "a private or local address",
                         "TUNEFORGE_WEBHOOK_ALLOW_PRIVATE", param="url")
    assert error["code"] == "invalid_webhook_url"


@pytest.mark.parametrize("body, param", [
    ({"event_types": ["batch.completed"]}, "event_types.0"),
    ({"event_types": []}, "event_types"),
    ({"colour": "red"}, "colour"),
    ({"name": ""}, "name"),
    ({"name": "a\x00b"}, "name"),
    ({"name": "a\ud800b"}, "name"),
])
def test_bad_fields_are_400_naming_them(client, tenant, body, param):
    raw = json.dumps({"url": "http://127.0.0.1:9/hooks", **body})  # ASCII escapes: a lone surrogate travels too
    response = client.post(BASE, headers={**auth(tenant[1]), "Content-Type": "application/json"}, content=raw)
    assert_error(response, 400, param=param)


def test_missing_url_and_non_json_bodies_are_400(client, tenant):
    _, key = tenant
    assert_error(client.post(BASE, headers=auth(key), json={}), 400, param="url")
    assert_error(client.post(BASE, headers={**auth(key), "Content-Type": "application/json"}, content=b"{nope"), 400)


def test_a_tenant_has_at_most_twenty_endpoints(client, tenant):
    _, key = tenant
    for _ in range(20):
        assert create(client, key).status_code == 200
    error = assert_error(create(client, key), 429, "at most 20")
    assert error["code"] == "webhook_endpoint_limit"
