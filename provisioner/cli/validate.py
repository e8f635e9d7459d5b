"""``provision validate`` and ``provision schema``: the offline commands."""

from __future__ import annotations

import os

import click


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people, json for machines.",
)
def validate(paths: tuple[str, ...], fmt: str) -> int:
    """Check manifests offline: YAML, the manifest schema and Graph's rules.

    PATH is a manifest file or a directory (its *.yaml and *.yml files). All manifests
    together form one desired state. Every problem is reported, each with file:line:col;
    under GitHub Actions they also become annotations on the pull request. Exit code 0 when
    everything is valid, 1 otherwise.
    """
    # Imported here so that commands which never read manifests do not pay for it.
    from provisioner.manifest.load import validate_paths
    from provisioner.views.diagnostics import render_github, render_json, render_text

    result = validate_paths(paths)
    if result.deferred:
        from provisioner.manifest.groupsource import note

        for generator in result.deferred:  # not a problem: said on stderr, whatever the format
            click.echo(f"note: {note(generator)}", err=True)
    if fmt == "json":
        counts = {"files": result.files, "chats": result.chats, "errors": len(result.diagnostics)}
        files = result.desired.files if result.desired else ()
        click.echo(render_json(result.diagnostics, counts, files))
    else:
        if result.diagnostics and os.environ.get("GITHUB_ACTIONS") == "true":
            click.echo(render_github(result.diagnostics))
        click.echo(render_text(result.diagnostics, result.summary))
    return 0 if result.ok else 1


@click.command("schema")
@click.argument("name", required=False, default="manifest", metavar="[NAME]")
def schema_command(name: str) -> int:
    """Print a JSON Schema shipped with provision (default: the manifest's).

    For editors and other validators, e.g. `provision schema | check-jsonschema
    --schemafile - chats.yaml`. NAME is `manifest`, or another shipped schema such as
    `apply-result` (the output of `apply --format json`); an unknown NAME lists them.
    """
    from provisioner.manifest.schema import shipped_schemas

    schemas = shipped_schemas()
    path = schemas.get(name)
    if path is None:
        raise click.BadParameter(
            f"{name!r} is not a shipped schema; choose from: {', '.join(schemas)}",
            param_hint="NAME",
        )
    # Printed byte for byte, so the output equals the file editors reference by path.
    click.echo(path.read_text(encoding="utf-8"), nl=False)
    return 0
