"""`llero tools import`, `export` and `list` as an operator runs them: settings only from the
environment, standard input never a terminal, the test database as LLERO_DATABASE_URL."""

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from llero.cli.main import cli
from llero.forge.formats import import_specs, parse_documents
from llero.storage.db import Database
from tests.conftest import CORPUS_DIR
from tests.forge.tool_helpers import count_rows

CORPUS_FILES = ("BFCL_v4_live_simple.json", "BFCL_v4_simple_python.json")


@pytest.fixture
def environ(
    data_dir: Path, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    # A .env file in the working directory would be read as settings, so run elsewhere.
    monkeypatch.chdir(tmp_path)
    return {"LLERO_DATA_DIR": str(data_dir), "LLERO_DATABASE_URL": database.url}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def private_umask() -> Iterator[None]:
    previous = os.umask(0)
    yield
    os.umask(previous)


def llero(runner: CliRunner, environ: dict[str, str], *arguments: str) -> Result:
    return runner.invoke(cli, list(arguments), env=environ, input="")


def write_lines(path: Path, *documents: dict[str, Any]) -> Path:
    path.write_text("\n".join(json.dumps(document) for document in documents))
    return path


def openai_tool(name: str) -> dict[str, Any]:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    return {"type": "function", "function": {"name": name, "parameters": schema}}


def distinct_names(*file_names: str) -> set[str]:
    names: set[str] = set()
    for file_name in file_names:
        documents = parse_documents((CORPUS_DIR / file_name).read_bytes())
        names.update(entry.spec.name for entry in import_specs(documents, None).imported)
    return names


def test_import_corpus_files_then_export(
    runner: CliRunner, environ: dict[str, str], database: Database
) -> None:
    for file_name in CORPUS_FILES:
        result = llero(
            runner,
            environ,
            "tools",
            "import",
            str(CORPUS_DIR / file_name),
            "--on-conflict",
            "new_version",
        )

        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("imported ")
        assert "renamed " in result.stdout
        assert "mappings: " in result.stdout
        assert "importing " in result.stderr

    names = distinct_names(*CORPUS_FILES)
    assert count_rows(database)["tools"] == len(names)

    exported = llero(runner, environ, "tools", "export")
    assert exported.exit_code == 0, exported.output
    tools = json.loads(exported.stdout)
    assert len(tools) == len(names)
    assert {tool["function"]["name"] for tool in tools} == names
    assert {tool["type"] for tool in tools} == {"function"}
    for format_name, schema_key in (("anthropic", "input_schema"), ("mcp", "inputSchema")):
        exported = llero(runner, environ, "tools", "export", "--format", format_name)
        assert exported.exit_code == 0, exported.output
        tools = json.loads(exported.stdout)
        assert {tool["name"] for tool in tools} == names
        assert all(tool[schema_key]["type"] == "object" for tool in tools)


def test_import_summary_lists_refused_with_reasons(
    runner: CliRunner, environ: dict[str, str]
) -> None:
    result = llero(
        runner,
        environ,
        "tools",
        "import",
        str(CORPUS_DIR / CORPUS_FILES[0]),
        "--on-conflict",
        "new_version",
    )

    assert result.exit_code == 0, result.output
    refused = [line for line in result.stdout.splitlines() if line.startswith("refused ")]
    assert len(refused) == 3
    assert refused[0].startswith(
        "refused obtener_cotizacion_de_creditos (case live_simple_67-31-0): "
    )
    assert "; 3 refused" in result.stdout.splitlines()[0]


def test_import_verbose_lists_every_mapping(
    runner: CliRunner, environ: dict[str, str], tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "tools.jsonl", openai_tool("math.factorial"))

    result = llero(runner, environ, "tools", "import", str(path), "--verbose")

    assert result.exit_code == 0, result.output
    assert "renamed math.factorial -> math_factorial" in result.stdout
    assert "mapped math_factorial name: the name 'math.factorial' became" in result.stdout


@pytest.mark.parametrize("format_name", ["anthropic", "mcp", "openai"])
def test_export_to_file_is_private(
    runner: CliRunner,
    environ: dict[str, str],
    tmp_path: Path,
    private_umask: None,
    format_name: str,
) -> None:
    path = write_lines(tmp_path / "tools.jsonl", openai_tool("get_weather"))
    assert llero(runner, environ, "tools", "import", str(path)).exit_code == 0
    output = tmp_path / "export.json"

    result = llero(
        runner, environ, "tools", "export", "--format", format_name, "--output", str(output)
    )

    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    tools = json.loads(output.read_text())
    assert len(tools) == 1
    assert result.stdout == ""
    assert f"exported 1 tools to {output}" in result.stderr


def test_export_over_existing_file_makes_it_private(
    runner: CliRunner, environ: dict[str, str], tmp_path: Path
) -> None:
    output = tmp_path / "export.json"
    output.write_text("old content")
    output.chmod(0o644)

    result = llero(runner, environ, "tools", "export", "--output", str(output))

    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    assert json.loads(output.read_text()) == []


def test_export_through_symlink_is_refused(
    runner: CliRunner, environ: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "target.txt"
    target.write_text("keep me")
    link = tmp_path / "export.json"
    link.symlink_to(target)

    result = llero(runner, environ, "tools", "export", "--output", str(link))

    assert result.exit_code == 2
    assert result.stderr.startswith(f"llero: cannot write {link}: ")
    assert target.read_text() == "keep me"


def test_export_selects_by_status(
    runner: CliRunner, environ: dict[str, str], tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "tools.jsonl", openai_tool("first"), openai_tool("second"))
    assert llero(runner, environ, "tools", "import", str(path)).exit_code == 0

    drafts = llero(runner, environ, "tools", "export", "--status", "draft")
    active = llero(runner, environ, "tools", "export", "--status", "active")

    assert [tool["function"]["name"] for tool in json.loads(drafts.stdout)] == ["first", "second"]
    assert json.loads(active.stdout) == []


def test_import_with_invalid_json_line_writes_nothing(
    runner: CliRunner, environ: dict[str, str], database: Database, tmp_path: Path
) -> None:
    lines = (CORPUS_DIR / CORPUS_FILES[1]).read_bytes().splitlines()
    lines[9] = b'{"id": "simple_python_9", "question": '
    path = tmp_path / "broken.json"
    path.write_bytes(b"\n".join(lines))

    result = llero(runner, environ, "tools", "import", str(path), "--on-conflict", "new_version")

    assert result.exit_code == 1
    assert "line 10: invalid JSON" in result.stderr
    assert "llero: import refused: line 10 of the file is not valid JSON" in result.stderr
    assert count_rows(database) == {"tools": 0, "tool_versions": 0, "categories": 0}


def test_import_all_or_nothing_refusal_writes_nothing(
    runner: CliRunner, environ: dict[str, str], database: Database
) -> None:
    result = llero(
        runner,
        environ,
        "tools",
        "import",
        str(CORPUS_DIR / CORPUS_FILES[0]),
        "--on-conflict",
        "new_version",
        "--all-or-nothing",
    )

    assert result.exit_code == 1
    assert result.stdout.startswith(
        "imported 0 new tools and 0 new versions; 0 unchanged; 3 refused"
    )
    assert "llero: import refused: 3 of 258 specs were refused" in result.stderr
    assert count_rows(database)["tools"] == 0


def test_import_again_refuses_every_taken_name(
    runner: CliRunner, environ: dict[str, str], database: Database, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "tools.jsonl", openai_tool("first"), openai_tool("second"))
    assert llero(runner, environ, "tools", "import", str(path)).exit_code == 0
    before = count_rows(database)

    again = llero(runner, environ, "tools", "import", str(path))
    skipped = llero(runner, environ, "tools", "import", str(path), "--on-conflict", "skip")

    assert again.exit_code == 1
    assert "every spec in the file was refused" in again.stderr
    assert skipped.exit_code == 0
    assert skipped.stdout.startswith("imported 0 new tools and 0 new versions; 2 unchanged")
    assert count_rows(database) == before


def test_import_escapes_control_characters_in_names(
    runner: CliRunner, environ: dict[str, str], tmp_path: Path
) -> None:
    path = write_lines(
        tmp_path / "tools.jsonl", openai_tool("\x1b]0;owned\x07name"), openai_tool("fine")
    )

    result = llero(runner, environ, "tools", "import", str(path))

    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output
    assert "\x07" not in result.output
    assert "refused \\x1b]0;owned\\x07name (document 1): " in result.stdout


def test_import_over_spec_limit_is_refused(
    runner: CliRunner, environ: dict[str, str], database: Database, tmp_path: Path
) -> None:
    path = write_lines(
        tmp_path / "tools.jsonl", *(openai_tool(f"tool_{index}") for index in range(3))
    )

    result = llero(runner, {**environ, "LLERO_MAX_IMPORT_SPECS": "2"}, "tools", "import", str(path))

    assert result.exit_code == 1
    assert "more than the 2 allowed in one import" in result.stderr
    assert count_rows(database)["tools"] == 0


def test_list_prints_tools_and_total(
    runner: CliRunner, environ: dict[str, str], tmp_path: Path
) -> None:
    path = write_lines(
        tmp_path / "tools.jsonl",
        openai_tool("get_weather"),
        openai_tool("get_time"),
        openai_tool("stocks"),
    )
    assert llero(runner, environ, "tools", "import", str(path)).exit_code == 0

    everything = llero(runner, environ, "tools", "list")
    searched = llero(runner, environ, "tools", "list", "--search", "get_", "--limit", "1")

    assert everything.exit_code == 0, everything.output
    assert [line.split()[1] for line in everything.stdout.splitlines()] == [
        "get_time",
        "get_weather",
        "stocks",
    ]
    assert everything.stderr == "1-3 of 3 tools\n"
    assert [line.split()[1] for line in searched.stdout.splitlines()] == ["get_time"]
    assert searched.stderr == "1-1 of 2 tools\n"


def test_command_on_unmigrated_database_fails(
    runner: CliRunner, environ: dict[str, str], tmp_path: Path
) -> None:
    empty = {**environ, "LLERO_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}

    result = llero(runner, empty, "tools", "list")

    assert result.exit_code == 2
    assert result.stderr == (
        "llero: the database is not at the latest migration; run `llero init` or `llero migrate`\n"
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["tools", "import", "missing.json"], "does not exist"),
        (["tools", "import", "."], "is a directory"),
        (["tools", "export", "--format", "yaml"], "'yaml' is not one of"),
        (["tools", "list", "--limit", "201"], "201 is not in the range"),
        (["tools", "import", "x.json", "--on-conflict", "overwrite"], "'overwrite' is not one of"),
    ],
)
def test_invalid_arguments_fail_with_usage(
    runner: CliRunner, environ: dict[str, str], arguments: list[str], message: str
) -> None:
    result = llero(runner, environ, *arguments)

    assert result.exit_code == 2
    assert message in result.stderr


def test_invalid_setting_fails_with_one_line(runner: CliRunner, environ: dict[str, str]) -> None:
    result = llero(runner, {**environ, "LLERO_MAX_IMPORT_SPECS": "0"}, "tools", "list")

    assert result.exit_code == 2
    assert result.stderr.startswith("llero: invalid setting LLERO_MAX_IMPORT_SPECS: ")


@pytest.mark.parametrize("command", ["import", "export", "list"])
def test_help_says_what_command_needs(runner: CliRunner, command: str) -> None:
    result = runner.invoke(cli, ["tools", command, "--help"])

    assert result.exit_code == 0
    assert "`llero init`" in result.stdout
    assert "LLERO_DATABASE_URL" in result.stdout


def test_command_on_unreachable_database_fails(
    runner: CliRunner, environ: dict[str, str], tmp_path: Path
) -> None:
    missing = tmp_path / "no such directory" / "llero.db"
    unreachable = {**environ, "LLERO_DATABASE_URL": f"sqlite:///{missing}"}

    result = llero(runner, unreachable, "tools", "list")

    assert result.exit_code == 2
    assert result.stderr == (
        "llero: cannot open the database (OperationalError); check LLERO_DATABASE_URL\n"
    )


def test_tools_test_reports_each_violation_path(
    runner: CliRunner, environ: dict[str, str], tmp_path: Path
) -> None:
    imported = llero(
        runner, environ, "tools", "import", str(write_lines(tmp_path / "t.json", openai_tool("w")))
    )
    assert imported.exit_code == 0, imported.output

    valid = llero(runner, environ, "tools", "test", "w", "--arguments", '{"city": "Riga"}')
    invalid = llero(runner, environ, "tools", "test", "w", "--arguments", '{"city": 1, "x": 2}')

    assert valid.exit_code == 0
    assert "valid call of w" in valid.output
    assert invalid.exit_code == 1
    assert "$.city: must be a string" in invalid.output
    assert "$.x: is not a known parameter" in invalid.output


def test_tools_test_unknown_tool_is_one_line(runner: CliRunner, environ: dict[str, str]) -> None:
    result = llero(runner, environ, "tools", "test", "nothing", "--arguments", "{}")

    assert result.exit_code == 2
    assert result.output.strip() == "llero: no tool is named 'nothing'"


def test_check_answers_reports_pass_rate_and_failures(runner: CliRunner) -> None:
    cases = CORPUS_DIR / "BFCL_v4_live_simple.json"
    answers = CORPUS_DIR / "BFCL_v4_live_simple.answers.json"

    result = runner.invoke(cli, ["tools", "check-answers", str(cases), str(answers)], input="")

    assert result.exit_code == 1
    assert "253 of 258 calls valid (98.1%); 2 invalid, 3 specs refused at import" in result.output
    assert "invalid  case live_simple_106-63-0 (record):" in result.output
    assert "$.bank_hours_start: 'bank_hours_start' is required" in result.output
