"""Framework pages that would publish internals are not served: FastAPI's own docs pages and
OpenAPI document are switched off, and the document is served only by a route with a permission."""

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize(
    "path", ["/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect", "/metrics", "/debug"]
)
def test_framework_pages_not_served(client: TestClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_openapi_document_served_under_api(client: TestClient) -> None:
    response = client.get("/api/openapi.json")

    assert response.status_code == 200
    assert response.json()["info"]["title"] == "Llero"
