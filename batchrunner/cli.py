"""The command line: parse, make one library call, render text or `--json`.

This is the only module that imports click, and `BatchrunnerGroup.invoke` is the only place
where errors become exit codes and messages.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click
import orjson

from batchrunner.errors import EXIT_ERROR, EXIT_INVALID, BatchrunnerError


@dataclass
class App:
    """What the global options decided, handed to every command."""

    home: Path
    json: bool
    verbose: int
    quiet: bool

    def emit(self, data: Any, text: str | None = None) -> None:
        """Write the command's result: one JSON document, or human text."""
        if self.json:
            sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str) + b"\n")
            sys.stdout.flush()
        elif text is not None:
            click.echo(text)

    def notice(self, message: str) -> None:
        """A side note for people (stderr), silenced by -q."""
        if not self.quiet:
            click.echo(message, err=True)


def _debug(app: App | None) -> bool:
    return bool(os.environ.get("BATCHRUNNER_DEBUG")) or bool(app and app.verbose)


def _fail(ctx: click.Context, exit_code: int, payload: dict[str, Any], message: str) -> NoReturn:
    app: App | None = ctx.obj if isinstance(ctx.obj, App) else None
    if app is not None and app.json:
        sys.stdout.buffer.write(orjson.dumps({"error": payload}, option=orjson.OPT_INDENT_2) + b"\n")
        sys.stdout.flush()
    click.echo(f"error: {message}", err=True)
    ctx.exit(exit_code)
    raise AssertionError("unreachable")


class BatchrunnerGroup(click.Group):
    """Maps every error to its exit code and a message, in one place."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BatchrunnerError as exc:
            _fail(ctx, exc.exit_code, exc.to_dict(), exc.message)
        except click.exceptions.Exit:
            raise
        except click.ClickException as exc:
            if isinstance(exc, click.UsageError):
                exc.exit_code = EXIT_INVALID
            raise
        except (KeyboardInterrupt, click.Abort):
            raise
        except OSError as exc:
            if _debug(ctx.obj if isinstance(ctx.obj, App) else None):
                raise
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            _fail(
                ctx,
                EXIT_ERROR,
                {"type": type(exc).__name__, "message": str(exc), "exit_code": EXIT_ERROR},
                f"{exc.strerror or exc}{where}",
            )
        except Exception as exc:  # the last line of defence: one line for users
            if _debug(ctx.obj if isinstance(ctx.obj, App) else None):
                raise
            _fail(
                ctx,
                EXIT_ERROR,
                {"type": type(exc).__name__, "message": str(exc), "exit_code": EXIT_ERROR},
                f"unexpected {type(exc).__name__}: {exc} (run with -v or BATCHRUNNER_DEBUG=1 for the traceback)",
            )


@click.group(cls=BatchrunnerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="BATCHRUNNER_HOME",
    default=".batchrunner",
    show_default=True,
    help="State home: the ledger, run folders, the local emulator's data.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout and nothing else there.")
@click.option("-v", "--verbose", count=True, help="More detail; tracebacks for unexpected errors.")
@click.option("-q", "--quiet", is_flag=True, help="No progress or notices on stderr.")
@click.version_option(package_name="batchrunner")
@click.pass_context
def cli(ctx: click.Context, home: Path, as_json: bool, verbose: int, quiet: bool) -> None:
    """Run Claude at scale through Anthropic's Message Batches API."""
    ctx.obj = App(home=home, json=as_json, verbose=verbose, quiet=quiet)


def main() -> None:
    cli(prog_name="batchrunner")
