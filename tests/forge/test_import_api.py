"""Bulk import and export over HTTP, with the BFCL corpus and hostile files."""

import json
from collections import Counter
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response

from llero.config.settings import Settings
from llero.forge.formats import (
    EXPORT_FORMATS,
    IMPORT_FORMATS,
    ImportedSpec,
    import_specs,
    parse_documents,
)
from llero.forge.service import ExportFormat, ImportFormat
from llero.forge.spec import dump_parameters
from llero.storage.db import Database
from llero.web.app import create_app
from tests.conftest import CORPUS_DIR, create_test_user
from tests.forge.tool_helpers import count_rows, create_tool

CORPUS_FILES = ("BFCL_v4_live_simple.json", "BFCL_v4_simple_python.json")
NDJSON = {"content-type": "application/x-ndjson"}


def post_import(client: TestClient, data: bytes, **params: Any) -> Response:
    return client.post("/api/tools/import", content=data, headers=NDJSON, params=params)


def openai_tool(name: str, **parameters: Any) -> dict[str, Any]:
    schema = {"type": "object", "properties": parameters, "required": []}
    return {"type": "function", "function": {"name": name, "description": "", "parameters": schema}}


def as_lines(*documents: dict[str, Any]) -> bytes:
    return "\n".join(json.dumps(document) for document in documents).encode()


def corpus_specs(file_name: str) -> list[ImportedSpec]:
    documents = parse_documents((CORPUS_DIR / file_name).read_bytes())
    return import_specs(documents, None).imported


def test_import_corpus_files_then_export_each_format(
    client: TestClient, database: Database
) -> None:
    expected_last: dict[str, ImportedSpec] = {}
    versions_by_name: Counter[str] = Counter()
    total_refused = 0

    for file_name in CORPUS_FILES:
        data = (CORPUS_DIR / file_name).read_bytes()
        response = post_import(client, data, on_conflict="new_version")

        assert response.status_code == 200, response.text
        report = response.json()
        lines = len(parse_documents(data))
        entries = len(report["imported"]) + len(report["unchanged"]) + len(report["refused"])
        assert entries == lines
        assert {item["code"] for item in report["refused"]} <= {
            "invalid_parameter_name",
            "unsupported_type",
        }
        total_refused += len(report["refused"])
        for item in report["imported"]:
            versions_by_name[item["name"]] += 1
        for spec in corpus_specs(file_name):
            expected_last[spec.spec.name] = spec

    assert total_refused == 4
    rows = count_rows(database)
    assert rows["tools"] == len(expected_last)
    assert rows["tool_versions"] == sum(versions_by_name.values())
    listed = client.get("/api/tools", params={"limit": 200}).json()
    assert listed["total"] == len(expected_last)

    for fmt in ("openai", "anthropic", "mcp"):
        exported = client.get("/api/tools/export", params={"format": fmt})
        assert exported.status_code == 200, fmt
        tools = exported.json()
        assert len(tools) == len(expected_last), fmt
        names = [tool["function"]["name"] if fmt == "openai" else tool["name"] for tool in tools]
        # Compared as sets, because the order of mixed-case names follows the database collation.
        assert set(names) == set(expected_last), fmt


def test_import_new_version_stores_last_spec_of_each_name(
    client: TestClient, database: Database
) -> None:
    file_name = "BFCL_v4_live_simple.json"
    response = post_import(client, (CORPUS_DIR / file_name).read_bytes(), on_conflict="new_version")
    assert response.status_code == 200, response.text

    last: dict[str, ImportedSpec] = {}
    for entry in corpus_specs(file_name):
        last[entry.spec.name] = entry
    recurring = [item for item in response.json()["imported"] if item["outcome"] == "new_version"]
    assert recurring
    for item in recurring:
        tool = client.get(f"/api/tools/{item['tool_id']}").json()
        assert tool["parameters"] == dump_parameters(last[item["name"]].spec.parameters)
        assert tool["description"] == last[item["name"]].spec.description


def test_import_keeps_original_name_of_renamed_tool(client: TestClient) -> None:
    data = as_lines(openai_tool("math.factorial", number={"type": "integer"}))

    response = post_import(client, data)

    assert response.status_code == 200, response.text
    imported = response.json()["imported"]
    assert [(item["name"], item["original_name"]) for item in imported] == [
        ("math_factorial", "math.factorial")
    ]
    assert "name_renamed" in [mapping["code"] for mapping in imported[0]["mappings"]]
    tool = client.get(f"/api/tools/{imported[0]['tool_id']}").json()
    assert tool["original_name"] == "math.factorial"
    versions = client.get(f"/api/tools/{imported[0]['tool_id']}/versions").json()
    assert [item["change"] for item in versions] == ["imported"]


def test_import_with_invalid_json_line_writes_nothing(
    client: TestClient, database: Database
) -> None:
    create_tool(client)
    lines = (CORPUS_DIR / CORPUS_FILES[0]).read_bytes().splitlines()
    lines[4] = b'{"id": "live_simple_4", "function": ['
    before = count_rows(database)

    response = post_import(client, b"\n".join(lines), on_conflict="new_version")

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_request"
    assert body["message"].startswith("line 5 of the file is not valid JSON")
    assert [detail["field"] for detail in body["details"]] == ["line 5"]
    assert count_rows(database) == before


@pytest.mark.parametrize(
    "data",
    [
        b'{"type": "function", "function": {"name": "a"',
        b"[1, 2,]",
        b'{"type": "function", "function": {"name": "a", "name": "b"}}',
        b'{"type": "function", "function": {"name": "a", "description": NaN}}',
        b"\xff\xfe not text",
    ],
)
def test_import_of_invalid_json_is_rejected(
    client: TestClient, database: Database, data: bytes
) -> None:
    response = post_import(client, data)

    assert response.status_code == 422
    assert "line 1" in response.json()["message"]
    assert count_rows(database)["tools"] == 0


def test_import_all_or_nothing_refusal_writes_nothing(
    client: TestClient, database: Database
) -> None:
    create_tool(client)
    before = count_rows(database)
    data = (CORPUS_DIR / CORPUS_FILES[0]).read_bytes()

    response = post_import(client, data, on_conflict="new_version", all_or_nothing="true")

    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "refused"
    assert body["message"] == (
        "3 of 258 specs were refused and all_or_nothing is set, so nothing was imported"
    )
    assert [detail["field"] for detail in body["details"]] == [
        "case live_simple_67-31-0",
        "case live_simple_117-73-0",
        "case live_simple_122-78-0",
    ]
    assert count_rows(database) == before


def test_import_refuses_taken_names_by_default(client: TestClient, database: Database) -> None:
    existing = create_tool(client, "get_weather")
    data = as_lines(
        openai_tool("get_weather", city={"type": "string"}),
        openai_tool("get_time", zone={"type": "string"}),
        openai_tool("get_time", zone={"type": "integer"}),
    )

    response = post_import(client, data)

    assert response.status_code == 200, response.text
    report = response.json()
    assert [item["name"] for item in report["imported"]] == ["get_time"]
    assert [(item["code"], item["reason"]) for item in report["refused"]] == [
        ("name_taken", f"the name get_weather is already taken by stored tool {existing['id']}"),
        ("name_taken", "the name get_time is already taken by an earlier spec in this file"),
    ]
    assert count_rows(database)["tools"] == 2


def test_import_of_only_taken_names_is_refused_whole(
    client: TestClient, database: Database
) -> None:
    data = as_lines(openai_tool("get_time", zone={"type": "string"}))
    assert post_import(client, data).status_code == 200
    before = count_rows(database)

    response = post_import(client, data)

    assert response.status_code == 409
    assert response.json()["message"] == "every spec in the file was refused; nothing was imported"
    assert count_rows(database) == before


def test_import_skip_reports_identical_and_refuses_different(client: TestClient) -> None:
    same = openai_tool("get_time", zone={"type": "string"})
    first = post_import(client, as_lines(same)).json()["imported"][0]
    data = as_lines(same, openai_tool("get_time", zone={"type": "integer"}))

    response = post_import(client, data, on_conflict="skip")

    assert response.status_code == 200, response.text
    report = response.json()
    assert report["imported"] == []
    assert report["unchanged"] == [
        {"source": "document 1", "name": "get_time", "tool_id": first["tool_id"], "version": 1}
    ]
    assert [item["source"] for item in report["refused"]] == ["document 2"]
    assert report["refused"][0]["reason"] == (
        f"the name get_time is taken by stored tool {first['tool_id']}, "
        "which differs from this spec"
    )


def test_import_new_version_versions_only_changes(client: TestClient) -> None:
    same = openai_tool("get_time", zone={"type": "string"})
    first = post_import(client, as_lines(same)).json()["imported"][0]
    data = as_lines(same, openai_tool("get_time", zone={"type": "integer"}), same)

    response = post_import(client, data, on_conflict="new_version")

    report = response.json()
    assert [(item["outcome"], item["version"]) for item in report["imported"]] == [
        ("new_version", 2),
        ("new_version", 3),
    ]
    assert [item["source"] for item in report["unchanged"]] == ["document 1"]
    versions = client.get(f"/api/tools/{first['tool_id']}/versions").json()
    assert [item["change"] for item in versions] == [
        "imported as a new version",
        "imported as a new version",
        "imported",
    ]


def test_import_refuses_markup_name_without_reflecting_it(
    client: TestClient, database: Database
) -> None:
    data = as_lines(
        openai_tool("<script>alert(1)</script>", city={"type": "string"}),
        openai_tool("get_time", zone={"type": "string"}),
    )

    response = post_import(client, data)

    assert response.status_code == 200, response.text
    assert "<script>" not in response.text
    refused = response.json()["refused"]
    assert [item["code"] for item in refused] == ["unsafe_name"]
    assert refused[0]["name"] == "<script>alert(1)</script>"
    assert count_rows(database)["tools"] == 1


def test_import_of_only_markup_name_is_refused_escaped(
    client: TestClient, database: Database
) -> None:
    data = as_lines(openai_tool("<script>alert(1)</script>", city={"type": "string"}))

    response = post_import(client, data)

    assert response.status_code == 409
    assert "<script>" not in response.text
    assert count_rows(database)["tools"] == 0


def test_import_refuses_huge_max_length(client: TestClient, database: Database) -> None:
    data = as_lines(
        openai_tool("huge", text={"type": "string", "maxLength": 10**9}),
        openai_tool("small", text={"type": "string", "maxLength": 100}),
    )

    response = post_import(client, data)

    assert response.status_code == 200, response.text
    refused = response.json()["refused"]
    assert [item["name"] for item in refused] == ["huge"]
    assert "maxLength" in refused[0]["reason"]
    assert [item["name"] for item in response.json()["imported"]] == ["small"]
    assert count_rows(database)["tools"] == 1


def test_import_reports_dropped_unknown_fields(client: TestClient) -> None:
    document = openai_tool("get_time", zone={"type": "string"})
    document["function"]["x-internal"] = {"owner": "ops"}

    response = post_import(client, as_lines(document))

    assert response.status_code == 200, response.text
    codes = [mapping["code"] for mapping in response.json()["imported"][0]["mappings"]]
    assert "unknown_key_dropped" in codes


def test_import_with_named_format_refuses_other_formats(client: TestClient) -> None:
    data = (CORPUS_DIR / CORPUS_FILES[1]).read_bytes()

    response = post_import(client, data, format="openai")

    assert response.status_code == 409
    assert response.json()["message"] == "every spec in the file was refused; nothing was imported"


def test_import_over_spec_limit_writes_nothing(settings: Settings, database: Database) -> None:
    limited = settings.model_copy(update={"max_import_specs": 2})
    data = as_lines(*(openai_tool(f"tool_{index}") for index in range(3)))

    app = create_app(limited, database)
    admin = create_test_user(app)
    with TestClient(app, headers=admin.headers) as client:
        response = post_import(client, data)

    assert response.status_code == 422
    assert response.json()["message"] == (
        "the file contains 3 tool specs, more than the 2 allowed in one import "
        "(LLERO_MAX_IMPORT_SPECS); split the file"
    )
    assert count_rows(database)["tools"] == 0


@pytest.mark.parametrize("data", [b"", b"   \n", b"[]"])
def test_import_of_empty_file_is_rejected(client: TestClient, data: bytes) -> None:
    response = post_import(client, data)

    assert response.status_code == 422
    assert response.json()["message"] == "the file contains no tool specs"


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None],
)
def test_import_with_other_media_type_is_rejected(
    client: TestClient, database: Database, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    data = as_lines(openai_tool("get_time"))

    response = client.post("/api/tools/import", content=data, headers=headers)

    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"
    assert count_rows(database)["tools"] == 0


def test_import_accepts_json_document_list(client: TestClient) -> None:
    data = json.dumps([openai_tool("first"), openai_tool("second")]).encode()

    response = client.post(
        "/api/tools/import", content=data, headers={"content-type": "application/json"}
    )

    assert response.status_code == 200, response.text
    assert [item["name"] for item in response.json()["imported"]] == ["first", "second"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"on_conflict": "overwrite"}, "query.on_conflict"),
        ({"format": "yaml"}, "query.format"),
        ({"all_or_nothing": "maybe"}, "query.all_or_nothing"),
    ],
)
def test_import_with_invalid_option_is_rejected(
    client: TestClient, params: dict[str, str], field: str
) -> None:
    response = post_import(client, as_lines(openai_tool("get_time")), **params)

    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == field


def test_formats_match_the_converter() -> None:
    assert {item.value for item in ExportFormat} == set(EXPORT_FORMATS)
    assert {item.value for item in ImportFormat} == {"auto", *IMPORT_FORMATS}


def test_import_error_does_not_reflect_markup(client: TestClient, database: Database) -> None:
    data = b'{"type": "function", "<script>x</script>": 1, "<script>x</script>": 2}'

    response = post_import(client, data)

    assert response.status_code == 422
    assert "<script>" not in response.text
    assert "\\\\u003cscript" in response.text
    assert count_rows(database)["tools"] == 0


def test_import_lists_first_twenty_invalid_lines(client: TestClient) -> None:
    lines = [json.dumps(openai_tool(f"tool_{index}")).encode() for index in range(50)]
    for index in range(1, 50, 2):
        lines[index] = b"{"

    response = post_import(client, b"\n".join(lines))

    assert response.status_code == 422
    fields = [detail["field"] for detail in response.json()["details"]]
    assert fields == [f"line {number}" for number in range(2, 41, 2)]
