"""The manifest's JSON Schema: where it ships, how it is checked, and how its errors read.

``schemas/manifest.schema.json`` (inside the package, so a non-editable install has it) is
the single source of truth for the format: editors use it through the
``# yaml-language-server: $schema=`` comment, ``jsonschema`` uses it on the error path, and the
fast path (``manifest.fastpath``) takes its enums and patterns from it.

Two details keep the three in agreement:

* ``pattern`` is matched with ECMA-262 semantics, as JSON Schema specifies: a final ``$``
  matches only at the very end (Python's ``$`` also matches before a trailing newline, which
  would let ``"key\\n"`` through).
* Error messages come from ``patternErrorMessage`` / ``errorMessage`` in the schema where
  present (VS Code's JSON and YAML extensions show the same texts), otherwise from the
  validator keyword, always phrased for someone editing YAML.
"""

from __future__ import annotations

import datetime
import difflib
import functools
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from yaml.nodes import Node

from provisioner.manifest.yamlload import JsonPath, Problem, locate

SCHEMA_FILE = "manifest.schema.json"

_Tag = tuple[str, str] | None


def schema_path() -> Path:
    """Path of the manifest JSON Schema shipped inside the installed package."""
    return Path(__file__).resolve().parent.parent / "schemas" / SCHEMA_FILE


def shipped_schemas() -> dict[str, Path]:
    """The JSON Schemas shipped in the package, by name: ``manifest`` (and ``apply-result``
    and others once their commands ship them), from ``schemas/<name>.schema.json``."""
    folder = schema_path().parent
    return {p.name[: -len(".schema.json")]: p for p in sorted(folder.glob("*.schema.json"))}


@functools.cache
def load_schema() -> Mapping[str, Any]:
    """The manifest JSON Schema (parsed once; treat it as read-only)."""
    with schema_path().open(encoding="utf-8") as fh:
        schema: dict[str, Any] = json.load(fh)
    return schema


@functools.cache
def regex(pattern: str) -> re.Pattern[str]:
    """A JSON Schema ``pattern`` compiled for ``search`` with ECMA-262 end-of-input ``$``."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


@functools.cache
def _validator() -> Any:
    # jsonschema is imported here, not at module level: valid manifests never need it, and
    # importing it costs more than validating a small manifest.
    from jsonschema import Draft202012Validator, validators
    from jsonschema.exceptions import ValidationError

    def pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Iterator[Any]:
        if validator.is_type(instance, "string") and not regex(patrn).search(instance):
            yield ValidationError(f"{instance!r} does not match {patrn!r}")

    cls = validators.extend(Draft202012Validator, {"pattern": pattern})
    return cls(load_schema())


def schema_problems(
    data: object, root: Node, skip: list[JsonPath], limit: int | None = None
) -> list[Problem]:
    """Every JSON Schema error in ``data`` (built from ``root``), as problems pointing at the
    offending nodes. Errors at or below a path in ``skip`` are dropped (already reported).
    With ``limit``, stops once more than ``limit`` problems are found (the caller reports the
    first ones and counts the rest another way): validating 400,000 broken chats one by one
    took a minute to list problems nobody reads."""
    found: list[tuple[Problem, _Tag]] = []
    for error in _validator().iter_errors(data):
        path: JsonPath = tuple(error.absolute_path)
        if not any(path[: len(s)] == s for s in skip):
            found.extend(_translate(error, path, root))
        if limit is not None and len(found) > 2 * limit:  # 2x: some are merged away below
            break
    # A misspelt required field ('chatTyp') is one mistake, not two: drop "missing 'chatType'"
    # when the unknown field next to it already suggests 'chatType'.
    suggested = {(p.path, tag[1]) for p, tag in found if tag and tag[0] == "suggests"}
    problems: list[Problem] = []
    seen: set[tuple[JsonPath, str]] = set()
    for problem, tag in found:
        if tag and tag[0] == "missing" and (problem.path, tag[1]) in suggested:
            continue
        if (problem.path, problem.message) not in seen:
            seen.add((problem.path, problem.message))
            problems.append(problem)
    return problems


_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "empty",
}


def _translate(error: Any, path: JsonPath, root: Node) -> Iterator[tuple[Problem, _Tag]]:
    """The problems of one jsonschema error. Each carries a tag linking unknown fields to the
    name they suggest and missing fields to their name (``("suggests" | "missing", name)``)."""
    kind = error.validator
    _, node = locate(root, path)
    if kind == "additionalProperties" and isinstance(error.instance, dict):
        yield from _unknown_fields(error, path, root, node)
    elif kind == "required" and isinstance(error.instance, dict):
        yield from _missing_fields(error, path, node)
    else:
        yield _value_problem(error, path, node), None


def _unknown_fields(
    error: Any, path: JsonPath, root: Node, node: Node
) -> Iterator[tuple[Problem, _Tag]]:
    known = sorted(_schema_of(error).get("properties", {}))
    for name in error.instance:
        if name in known:
            continue
        key_node, _ = locate(root, (*path, name))
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint: str | None = None
        if close:
            hint = f"did you mean '{close[0]}'?"
        elif known:
            hint = "known fields: " + ", ".join(known)
        problem = Problem(path, key_node or node, f"'{name}' is not a known field", hint)
        yield problem, ("suggests", close[0]) if close else None


def _missing_fields(error: Any, path: JsonPath, node: Node) -> Iterator[tuple[Problem, _Tag]]:
    for name in error.validator_value:
        if name not in error.instance:
            message = _schema_of(error).get("errorMessage") or f"missing required field '{name}'"
            missing_hint = _REQUIRED_HINTS.get((path, name))
            yield Problem(path, node, message, missing_hint), ("missing", name)


def _value_problem(error: Any, path: JsonPath, node: Node) -> Problem:
    """The one problem of an error about a value: its type, enum, const, pattern or size."""
    kind = error.validator
    schema = _schema_of(error)
    instance = error.instance
    label = _label(path)
    if kind == "type":
        return _wrong_type(error, path, node)
    if kind == "enum":
        options = ", ".join(repr(o) for o in error.validator_value)
        hint = _enum_hint(instance, error.validator_value)
        return Problem(path, node, f"{label} {_show(instance)} is not one of {options}", hint)
    if kind == "const":
        hint = "this provision reads manifest version 1" if path == ("version",) else None
        message = f"{label} must be {error.validator_value!r}, not {_show(instance)}"
        return Problem(path, node, message, hint)
    if kind == "pattern":
        what = schema.get("patternErrorMessage") or f"does not match {error.validator_value}"
        return Problem(path, node, f"{label} {_show(instance)} {what}")
    if kind in ("minLength", "maxLength", "minItems", "maxItems"):
        return Problem(path, node, _size_message(error, label))
    if kind in ("not", "oneOf") and "errorMessage" in schema:
        return Problem(path, node, f"{label} {schema['errorMessage']}")
    return Problem(path, node, f"{label}: {error.message}")


def _wrong_type(error: Any, path: JsonPath, node: Node) -> Problem:
    expected = error.validator_value
    instance = error.instance
    names = [expected] if isinstance(expected, str) else list(expected)
    want = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
    hint: str | None = None
    if names == ["string"] and isinstance(instance, (bool, int, float, datetime.date)):
        hint = "put the value in quotes to make it a string"
    elif instance is None and "array" in names:
        hint = "for an empty list write []"
    elif not path:
        hint = "a manifest is a mapping with 'version: 1' and a 'chats:' list"
    return Problem(path, node, f"{_label(path)} must be {want}, not {_describe(instance)}", hint)


def _enum_hint(instance: object, options: list[Any]) -> str | None:
    if not isinstance(instance, str):
        return None
    lowered = {str(o).lower(): str(o) for o in options}
    close = difflib.get_close_matches(instance.lower(), list(lowered), n=1, cutoff=0.6)
    return f"did you mean '{lowered[close[0]]}'?" if close else None


def _size_message(error: Any, label: str) -> str:
    kind = error.validator
    size = len(error.instance)
    schema = _schema_of(error)
    if "errorMessage" in schema:
        return f"{schema['errorMessage']} (found {size})"
    unit = "character" if kind.endswith("Length") else "entry"
    bound = "at least" if kind.startswith("min") else "at most"
    return f"{label} must have {bound} {_count(error.validator_value, unit)} (found {size})"


def _schema_of(error: Any) -> dict[str, Any]:
    return error.schema if isinstance(error.schema, dict) else {}


_REQUIRED_HINTS: dict[tuple[JsonPath, str], str] = {
    ((), "version"): "start the manifest with 'version: 1'",
    ((), "chats"): "add a 'chats:' list (write 'chats: []' for none)",
}


def _label(path: JsonPath) -> str:
    if not path:
        return "the manifest"
    last = path[-1]
    if isinstance(last, int):
        parent = path[-2] if len(path) > 1 else ""
        return f"{parent}[{last}]"
    return last


def _count(n: int, unit: str) -> str:
    if n == 1:
        return f"1 {unit}"
    return f"{n} " + ("entries" if unit == "entry" else unit + "s")


def _show(value: object) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    return _describe(value)


def _describe(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return f"the boolean {_show(value)}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return "a date"
    return type(value).__name__
