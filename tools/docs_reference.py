"""The docs site's generated pages (mkdocs.yml `hooks:`): the manifest reference from the
shipped JSON Schema, the command reference from the click commands, and the JSON outputs with
their schemas, so the reference cannot drift from what provision accepts and prints. The
RELIABILITY.md and BENCHMARKS.md evidence pages are added as they are, with links to other
files of the repository pointed at the repository.

`mkdocs build --strict` runs it (.ci/run); tests/test_docs.py checks the pages it makes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parent.parent
REPOSITORY = "https://github.com/OWNER/provision/blob/main/"


# --- the manifest, from its JSON Schema -------------------------------------------------------


def _type(spec: dict[str, Any]) -> str:
    if "$ref" in spec:
        name = spec["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{_anchor(name)})"
    if "const" in spec:
        return f"`{json.dumps(spec['const'])}`"
    if "enum" in spec:
        return " or ".join(f"`{v}`" for v in spec["enum"])
    kind = spec.get("type", "")
    if kind == "array":
        return f"list of {_type(spec.get('items', {}))}"
    if "pattern" in spec and kind == "string":
        return f"string matching `{spec['pattern']}`"
    return f"{kind}" if isinstance(kind, str) else " or ".join(kind)


def _anchor(heading: str) -> str:
    """The id Python-Markdown's toc gives a heading: lower case, word characters and '-'."""
    return re.sub(r"[^\w\- ]", "", heading).strip().lower().replace(" ", "-")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _properties(spec: dict[str, Any]) -> list[str]:
    required = set(spec.get("required", ()))
    lines = ["| field | type | required | meaning |", "| --- | --- | --- | --- |"]
    for name, prop in spec.get("properties", {}).items():
        limits = [f"{k} {prop[k]}" for k in ("minLength", "maxLength", "minItems") if k in prop]
        meaning = prop.get("description", "") + (f" ({', '.join(limits)})" if limits else "")
        lines.append(
            f"| `{name}` | {_cell(_type(prop))} | {'yes' if name in required else 'no'} "
            f"| {_cell(meaning)} |"
        )
    return lines


def manifest_reference(schema: dict[str, Any]) -> str:
    out = [
        "# Manifest reference",
        "",
        "Generated from the JSON Schema provision ships (`provision schema`, "
        f"[schemas/manifest.schema.json]({REPOSITORY}schemas/manifest.schema.json)); the rules "
        "a schema cannot say (duplicate keys and pairs across files, the same user twice) are "
        "in [Manifests](../manifests.md).",
        "",
        schema.get("description", ""),
        "",
        "## The document",
        "",
        *_properties(schema),
    ]
    for name, spec in schema.get("$defs", {}).items():
        out += ["", f"## {name}", ""]
        if spec.get("description"):
            out += [spec["description"], ""]
        if "properties" in spec:
            out += _properties(spec)
        else:
            out.append(f"Type: {_type(spec)}.")
        out += _rules(spec)
    return "\n".join(out) + "\n"


def _rules(spec: dict[str, Any]) -> list[str]:
    """The schema's conditional rules (``allOf`` of ``if``/``then``), one line each."""
    out = []
    for rule in spec.get("allOf", ()):
        when = rule.get("if", {}).get("properties", {})
        then = rule.get("then", {})
        if not when:
            continue
        cond = ", ".join(f"`{k}: {v.get('const')}`" for k, v in when.items())
        said = [then["errorMessage"]] if then.get("errorMessage") else []
        for name, prop in then.get("properties", {}).items():
            if prop.get("errorMessage"):
                said.append(f"`{name}` {prop['errorMessage']}")
        if said:
            out.append(f"- When {cond}: {'; '.join(said)}.")
    return ["", *out] if out else []


# --- the commands, from click ---------------------------------------------------------------


def _commands(group: click.Group, prefix: str) -> Iterator[tuple[str, click.Command]]:
    context = click.Context(group)
    for name in sorted(group.list_commands(context)):
        command = group.get_command(context, name)
        if command is None or command.hidden:
            continue
        yield f"{prefix} {name}", command
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix} {name}")


def _option_rows(command: click.Command) -> list[str]:
    rows = ["| option | env | default | meaning |", "| --- | --- | --- | --- |"]
    for param in command.params:
        if not isinstance(param, click.Option) or param.hidden:
            continue
        names = ", ".join(f"`{o}`" for o in (*param.opts, *param.secondary_opts))
        env = f"`{param.envvar}`" if isinstance(param.envvar, str) else ""
        default = "" if param.default in (None, False, ()) or param.is_flag else param.default
        choices = ""
        if isinstance(param.type, click.Choice):
            choices = " (" + ", ".join(f"`{c}`" for c in param.type.choices) + ")"
        rows.append(
            f"| {names} | {env} | {_cell(str(default))} | {_cell((param.help or '') + choices)} |"
        )
    return rows


def command_reference(cli: click.Group) -> str:
    out = [
        "# Command reference",
        "",
        "Generated from the commands themselves (`provision COMMAND --help` says the same). "
        "Exit codes: 0 success (for `plan`: no changes), 1 any error, 2 only for "
        "`plan --detailed-exitcode` with changes; 130/143 when `apply` is stopped by "
        "SIGINT/SIGTERM.",
        "",
        "Options of `provision` itself, before the command:",
        "",
        *_option_rows(cli),
    ]
    for path, command in _commands(cli, "provision"):
        context = click.Context(command, info_name=path)
        usage = command.collect_usage_pieces(context)
        out += ["", f"## {path}", "", "```", f"{path} {' '.join(usage)}", "```", ""]
        out.append(_help(command))
        if any(isinstance(p, click.Option) for p in command.params):
            out += ["", *_option_rows(command)]
    return "\n".join(out) + "\n"


def _help(command: click.Command) -> str:
    text = (command.help or "").split("\f")[0]
    return re.sub(r"\n[ \t]+", "\n", text.strip())


# --- JSON outputs ------------------------------------------------------------------------------


def json_reference(schemas: dict[str, Path]) -> str:
    out = [
        "# JSON outputs",
        "",
        "Every `--format json` output is one JSON object with a published schema "
        "(`provision schema NAME` prints it; tests validate every output against it). "
        "Under `--format json` an error is one JSON object too (`error`).",
        "",
        "| schema | for |",
        "| --- | --- |",
    ]
    for name, path in schemas.items():
        title = json.loads(path.read_text(encoding="utf-8")).get("title", "")
        out.append(f"| `provision schema {name}` | {_cell(title)} |")
    return "\n".join(out) + "\n"


def evidence_page(path: Path) -> str:
    """A file of the repository root as a page: its links to other files go to GitHub."""
    text = path.read_text(encoding="utf-8")
    return re.sub(r"\]\((?!https?://|#)([^)]+)\)", lambda m: f"]({REPOSITORY}{m.group(1)})", text)


def pages() -> dict[str, str]:
    from provisioner.cli.main import cli
    from provisioner.manifest.schema import load_schema, shipped_schemas

    return {
        "reference/manifest.md": manifest_reference(dict(load_schema())),
        "reference/commands.md": command_reference(cli),
        "reference/json.md": json_reference(shipped_schemas()),
        "reliability.md": evidence_page(ROOT / "RELIABILITY.md"),
        "benchmarks.md": evidence_page(ROOT / "BENCHMARKS.md"),
    }


# --- the mkdocs hook ---------------------------------------------------------------------------


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for name, content in pages().items():
        files.append(File.generated(config, name, content=content))
    return files
