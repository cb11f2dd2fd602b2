"""Request bodies: a size cap enforced before the body is read in full, a JSON nesting cap that
runs before the parser recurses, and errors that name the field but never echo the value.

The limits under test are the defaults: 1 MiB and 32 levels.
"""

import asyncio
import json
from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import Message

from llero.web.bodies import json_has_nul, nul_field
from tests.web.probes import BODY_METHODS, PLANTED_SECRET

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32
TWENTY_MIB = 20 * 1024 * 1024
CHUNK = 64 * 1024

JSON_HEADERS = {"content-type": "application/json"}


class AsgiResult:
    def __init__(self) -> None:
        self.status = 0
        self.body = b""
        self.chunks_read = 0
        self.bytes_read = 0


def _scope(method: str, headers: list[tuple[bytes, bytes]]) -> dict[str, object]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": "/probe/echo",
        "raw_path": b"/probe/echo",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _stream(
    app: FastAPI, method: str, total: int, headers: list[tuple[bytes, bytes]]
) -> AsgiResult:
    """Offer ``total`` bytes in 64 KiB chunks, counting how many the app takes."""
    result = AsgiResult()

    async def receive() -> Message:
        if result.bytes_read >= total:
            return {"type": "http.disconnect"}
        result.chunks_read += 1
        result.bytes_read += CHUNK
        return {
            "type": "http.request",
            "body": b" " * CHUNK,
            "more_body": result.bytes_read < total,
        }

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            result.status = message["status"]
        elif message["type"] == "http.response.body":
            result.body += message.get("body", b"")

    await app(_scope(method, headers), receive, send)
    return result


@pytest.mark.parametrize("method", BODY_METHODS)
def test_declared_oversized_body_rejected_unread(probe_app: FastAPI, method: str) -> None:
    declared = [(b"content-length", str(TWENTY_MIB).encode())]

    result = asyncio.run(_stream(probe_app, method, TWENTY_MIB, declared))

    assert result.status == 413
    assert json.loads(result.body)["error"] == "body_too_large"
    assert result.chunks_read == 0


@pytest.mark.parametrize("method", BODY_METHODS)
def test_chunked_oversized_body_rejected_after_cap(probe_app: FastAPI, method: str) -> None:
    result = asyncio.run(_stream(probe_app, method, TWENTY_MIB, []))

    assert result.status == 413
    assert json.loads(result.body)["error"] == "body_too_large"
    # The middleware stops at the first chunk that crosses the cap.
    assert result.chunks_read == MAX_BYTES // CHUNK + 1


@pytest.mark.parametrize("declared", ["-1", "1e9", "abc", "0x10"])
def test_malformed_content_length_rejected(probe_app: FastAPI, declared: str) -> None:
    headers = [(b"content-length", declared.encode())]

    result = asyncio.run(_stream(probe_app, "POST", CHUNK, headers))

    assert result.status == 400
    assert json.loads(result.body)["error"] == "bad_request"
    assert result.chunks_read == 0


def _padded_body(size: int) -> bytes:
    body = json.dumps({"name": "padded", "count": 1}).encode()
    return body + b" " * (size - len(body))


def test_body_at_cap_accepted(probe_client: TestClient) -> None:
    response = probe_client.post(
        "/probe/echo", content=_padded_body(MAX_BYTES), headers=JSON_HEADERS
    )

    assert response.status_code == 200
    assert response.json()["name"] == "padded"


@pytest.mark.parametrize("method", BODY_METHODS)
def test_body_one_byte_over_cap_rejected(probe_client: TestClient, method: str) -> None:
    response = probe_client.request(
        method, "/probe/echo", content=_padded_body(MAX_BYTES + 1), headers=JSON_HEADERS
    )

    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    assert response.json()["message"] == f"the request body is larger than {MAX_BYTES} bytes"


def _nested_arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _nested_objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("build", [_nested_arrays, _nested_objects], ids=["arrays", "objects"])
@pytest.mark.parametrize(
    "content_type", ["application/json", "Application/JSON", "application/merge-patch+json"]
)
def test_deeply_nested_json_rejected(
    probe_client: TestClient, build: Callable[[int], bytes], content_type: str
) -> None:
    response = probe_client.post(
        "/probe/echo", content=build(10_000), headers={"content-type": content_type}
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert response.json()["message"] == f"the JSON body is nested deeper than {MAX_DEPTH} levels"


def test_nesting_at_cap_reaches_validation(probe_client: TestClient) -> None:
    response = probe_client.post(
        "/probe/echo", content=_nested_arrays(MAX_DEPTH), headers=JSON_HEADERS
    )

    assert response.status_code == 422


def test_nesting_one_over_cap_rejected(probe_client: TestClient) -> None:
    response = probe_client.post(
        "/probe/echo", content=_nested_arrays(MAX_DEPTH + 1), headers=JSON_HEADERS
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_brackets_inside_strings_not_counted(probe_client: TestClient) -> None:
    name = '[{"[' * 16
    response = probe_client.post("/probe/echo", json={"name": name, "count": 1, "tags": ["]" * 64]})

    assert response.status_code == 200
    assert response.json()["name"] == name


@pytest.mark.parametrize(
    "content",
    [b"{", b"{'name': 'a', 'count': 1}", b'{"name": "a", "count": 1,}', b"[1, 2", b"NaN x"],
)
def test_invalid_json_rejected(probe_client: TestClient, content: bytes) -> None:
    response = probe_client.post("/probe/echo", content=content, headers=JSON_HEADERS)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_json"
    assert response.json()["message"] == "the request body is not valid JSON"


@pytest.mark.parametrize("content", [b"\xff\xfe\x00", b'{"name": "\xc3\x28", "count": 1}'])
def test_undecodable_body_rejected(probe_client: TestClient, content: bytes) -> None:
    # FastAPI reports bytes that are not UTF-8 as a parse error, not as invalid JSON.
    response = probe_client.post("/probe/echo", content=content, headers=JSON_HEADERS)

    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert response.json()["message"] == "there was an error parsing the body"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "probe", "count": PLANTED_SECRET}, "body.count"),
        ({"name": [PLANTED_SECRET], "count": 1}, "body.name"),
        ({"name": {"key": PLANTED_SECRET}, "count": 1}, "body.name"),
        ({"name": PLANTED_SECRET * 3, "count": 1}, "body.name"),
        ({"name": "probe", "count": 1, "tags": PLANTED_SECRET}, "body.tags"),
        ({"name": "probe", "count": 1, "tags": [PLANTED_SECRET] * 9}, "body.tags"),
        ({"name": "probe", "count": 1, "tags": [1, PLANTED_SECRET, 2]}, "body.tags.0"),
        ({"name": "probe", "count": 1, "api_key": PLANTED_SECRET}, "body.api_key"),
    ],
)
def test_validation_error_names_field_without_value(
    probe_client: TestClient, body: dict[str, object], field: str
) -> None:
    response = probe_client.post("/probe/echo", json=body)

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert field in [detail["field"] for detail in response.json()["details"]]
    assert response.json()["message"].startswith("body.")
    assert PLANTED_SECRET not in response.text


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        ({"name": "probe"}, "body.count", "Field required"),
        ({"name": "probe", "count": "5"}, "body.count", "Input should be a valid integer"),
        ({"name": "probe", "count": 1.0}, "body.count", "Input should be a valid integer"),
        ({"name": "probe", "count": True}, "body.count", "Input should be a valid integer"),
        ({"name": 5, "count": 1}, "body.name", "Input should be a valid string"),
        (
            {"name": "probe", "count": 1, "is_admin": True},
            "body.is_admin",
            "Extra inputs are not permitted",
        ),
    ],
)
def test_body_validated_strictly(
    probe_client: TestClient, body: dict[str, object], field: str, problem: str
) -> None:
    response = probe_client.post("/probe/echo", json=body)

    assert response.status_code == 422
    assert {"field": field, "problem": problem} in response.json()["details"]


def test_body_must_be_an_object(probe_client: TestClient) -> None:
    response = probe_client.post("/probe/echo", json=[{"name": "probe", "count": 1}])

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "body"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a": "x\\u0000y"}', True),
        (b'{"a": "\\\\\\u0000"}', True),
        (b'{"a": "\\\\u0000"}', False),
        (b'{"a": "u0000"}', False),
        (b'{"a": "\\u00001"}', True),
    ],
)
def test_json_has_nul_counts_escaping_backslashes(body: bytes, expected: bool) -> None:
    assert json_has_nul(body) is expected
    assert ("\x00" in json.loads(body)["a"]) is expected


def test_nul_in_body_rejected_before_storage(client: TestClient) -> None:
    response = client.post("/api/categories", json={"name": "c1", "description": "d\x00"})

    assert response.status_code == 422
    body = response.json()
    assert body["message"] == (
        "body.description: text must not contain the NUL character (\\u0000)"
    )
    assert body["details"] == [
        {"field": "body.description", "problem": "must not contain the NUL character (\\u0000)"}
    ]
    assert client.get("/api/categories").json() == []


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"messages": [{"content": "hi"}, {"content": "a\x00"}]}, "body.messages.1.content"),
        ({"outer": {"key\x00": 1}}, "body.outer"),
        ({"k" * 100: {"inner": "\x00"}}, "body"),
        (["\x00"], "body.0"),
    ],
)
def test_nul_field_names_the_value(value: object, field: str) -> None:
    assert nul_field(value) == field


def test_nul_in_query_rejected(client: TestClient) -> None:
    response = client.get("/api/tools?limit=5&search=a%00b")

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert response.json()["details"][0]["field"] == "query.search"


def test_nul_in_path_rejected(client: TestClient) -> None:
    response = client.get("/api/tools/1%00")

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "path"
