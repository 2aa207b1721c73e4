"""Property-based requests generated from the app's own OpenAPI schema (bounded examples):
no server errors, and responses that conform to the schema."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from app.main import app
from tests.conftest import new_tenant

schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture(scope="module")
def api_keys(database) -> dict[str, str]:
    """Each operation is exercised with the role it is for: tenants, or operators under /v1/admin."""
    from app.core.db import session_scope
    from app.tenants.service import create_api_key

    with session_scope() as db:
        admin = create_api_key(db, None, role="admin")
    return {"tenant": new_tenant()[1], "admin": admin}


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_requests(case, api_keys):
    key = api_keys["admin" if case.path.startswith("/v1/admin") else "tenant"]
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {key}"}
    response = case.call()
    assert response.status_code < 500, (case.method, case.formatted_path, response.text[:300])
    case.validate_response(response, excluded_checks=[
        schemathesis.checks.positive_data_acceptance,  # ids in paths are random: 404 is the right answer
    ])
