"""Builders shared by the Forge tests."""

from typing import Any

from llero.forge.spec import ToolSpec


def make_spec(*parameters: dict[str, Any], name: str = "tool") -> ToolSpec:
    return ToolSpec.model_validate({"name": name, "parameters": list(parameters)})


def condition(effect: str, parameter: str, operator: str, value: object) -> dict[str, Any]:
    return {"effect": effect, "parameter": parameter, "operator": operator, "value": value}
