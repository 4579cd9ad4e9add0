"""Validating a user's file against its JSON schema, with one line that names the file, the
field and the fix (strategies, label sets; jsonschema is the project's own dependency).

Types are strict: ``multi_label: "false"`` (quoted) is a string, not a boolean, and is
refused rather than read as true. An unknown key names the closest known one.
"""

from __future__ import annotations

from typing import Any

import jsonschema

from vara.errors import ConfigError, did_you_mean

__all__ = ["check"]

_TYPE_FIX = {
    "boolean": "write true or false, unquoted",
    "integer": "write a whole number, unquoted",
    "number": "write a number, unquoted",
    "array": "write a list: [a, b] or one '- item' per line",
    "object": "write a mapping: {key: value} or 'key: value' lines",
}


def _hint(error: jsonschema.ValidationError) -> str:
    """A close match for a misspelt key or enum value, or how to write the wanted type."""
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = error.schema.get("properties", {})
        extra = [k for k in error.instance if k not in allowed]
        return did_you_mean(str(extra[0]), allowed) if len(extra) == 1 else ""
    if error.validator == "enum" and isinstance(error.instance, str):
        return did_you_mean(error.instance, [str(v) for v in error.validator_value])
    if "fix" in error.schema:  # a schema's own advice for this field (a non-standard key)
        return f" ({error.schema['fix']})"
    if error.validator == "type" and isinstance(error.validator_value, str):
        fix = _TYPE_FIX.get(error.validator_value)
        return f" ({fix})" if fix else ""
    return ""


def _order(error: jsonschema.ValidationError) -> tuple:
    # By place in the file; at one place a misspelt key first (its hint explains a missing one).
    return (list(map(str, error.absolute_path)), error.validator != "additionalProperties")


def check(data: Any, schema: dict[str, Any], what: str) -> None:
    """Raise ConfigError naming ``what`` (e.g. "label set my.yaml") and the first bad field."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=_order)
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.absolute_path) or "(top level)"
        raise ConfigError(f"{what}: {where}: {first.message}{_hint(first)}")
