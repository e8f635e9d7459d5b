"""The command line: parse, call the core, render, choose the exit code.

Nothing below this module prints, prompts or exits; everything here stays thin.
Exit codes (contract): 0 success / no changes, 1 any error (usage errors included),
2 only for ``plan --detailed-exitcode`` when changes are present.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

import click

from provisioner import __version__
from provisioner.errors import ProvisionError

BUG_REPORT = (
    "provision: internal error (a bug in provision {version}): {error}. "
    "Please report it with the output of the same command run with --debug."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="provision")
@click.option("--debug", is_flag=True, help="Show tracebacks for internal errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Declarative provisioning of Microsoft Teams chats through Microsoft Graph.

    Describe chats in YAML manifests, check them with `validate`, review the changes with
    `plan`, and make them with `apply`. Try it without a tenant: `--emulator` runs everything
    against a built-in local Graph emulator.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


@cli.command()
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
    from provisioner.manifest import validate_paths
    from provisioner.render_diagnostics import render_github, render_json, render_text

    result = validate_paths(paths)
    if fmt == "json":
        counts = {"files": result.files, "chats": result.chats, "errors": len(result.diagnostics)}
        files = result.desired.files if result.desired else ()
        click.echo(render_json(result.diagnostics, counts, files))
    else:
        if result.diagnostics and os.environ.get("GITHUB_ACTIONS") == "true":
            click.echo(render_github(result.diagnostics))
        click.echo(render_text(result.diagnostics, result.summary))
    return 0 if result.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``provision`` console script. Returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        result = cli.main(args=args, prog_name="provision", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except click.ClickException as exc:
        # Usage errors are exit 1 by contract (click's default would be 2, which the
        # contract reserves for `plan --detailed-exitcode`).
        exc.show()
        return 1
    except ProvisionError as exc:
        click.echo(f"Error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    except Exception as exc:  # the one place that reports bugs
        click.echo(BUG_REPORT.format(version=__version__, error=type(exc).__name__), err=True)
        if debug:
            traceback.print_exc()
        return 1
    return int(result or 0)
