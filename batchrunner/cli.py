"""The command line: parse, make one library call, render text or `--json`.

This is the only module that imports click, and `BatchrunnerGroup.invoke` is the only place
where errors become exit codes and messages. The global options (`--home`, `--ledger`, `--json`,
`-v`, `-q`) are accepted before or after the command (`CommandsGroup`); a reader that stops
reading (`| head -1`) ends the output quietly, never the command.
"""

from __future__ import annotations

import errno
import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import click
import orjson
from click.core import ParameterSource

from batchrunner import settings
from batchrunner.errors import (
    EXIT_ERROR,
    EXIT_INCOMPLETE,
    EXIT_RUNNING,
    BatchrunnerError,
    Detached,
    Interrupted,
)
from batchrunner.states import FINISHED_STATES, BatchState, RunState

if TYPE_CHECKING:
    from batchrunner.compile import CompileReport
    from batchrunner.ledger import Batch, Run
    from batchrunner.pipeline import Events, Outcome
    from batchrunner.poll import Polled

# The pipeline is imported by the commands that use it, so `validate`, `serve` and shell
# completion start fast; the anthropic SDK only by those that call the API (see client.py).


@dataclass
class App:
    """What the global options decided, handed to every command."""

    home: Path
    json: bool
    verbose: int
    quiet: bool
    ledger: str | None = None
    store: str | None = None

    def emit(self, data: Any, text: str | None = None) -> None:
        """Write the command's result: one JSON document, or human text."""
        if self.json:
            _write_json(data)
        elif text is not None:
            _echo(text)

    def notice(self, message: str) -> None:
        """A side note for people (stderr), silenced by -q."""
        if not self.quiet:
            _echo(message, err=True)


def _echo(text: str, *, err: bool = False) -> None:
    """click.echo, except that a reader who has gone (`| head -1`) silences the stream instead of
    failing the command: what was already done stands, and the exit code stays the command's."""
    stream = sys.stderr if err else sys.stdout
    try:
        click.echo(text, file=stream)
    except BrokenPipeError:
        _silence(stream)


def _write_json(data: Any) -> None:
    try:
        sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str) + b"\n")
        sys.stdout.flush()
    except BrokenPipeError:
        _silence(sys.stdout)


def _silence(stream: TextIO) -> None:
    """Point a closed pipe's file descriptor at /dev/null, so later writes and the interpreter's
    flush at exit succeed instead of printing "Exception ignored ... BrokenPipeError"."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # not a real file (click's test runner): nothing is left to flush
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _debug(app: App | None) -> bool:
    return bool(os.environ.get(settings.DEBUG)) or bool(app and app.verbose)


def _fail(ctx: click.Context, exit_code: int, payload: dict[str, Any], message: str) -> NoReturn:
    if _wants_json(ctx):
        _write_json({"error": payload})
    _echo(f"error: {message}", err=True)
    ctx.exit(exit_code)
    raise AssertionError("unreachable")


def _stopped(ctx: click.Context, exc: Detached | Interrupted) -> NoReturn:
    """Ctrl-C is what the user asked for, not an error: say what it left and how to come back."""
    if _wants_json(ctx):
        _write_json({"stopped": exc.to_dict()})
    _echo(exc.message, err=True)
    ctx.exit(exc.exit_code)
    raise AssertionError("unreachable")


_JSON_TYPED = "batchrunner.json_typed"


def _wants_json(ctx: click.Context) -> bool:
    """--json was typed anywhere, even if parsing stopped at a usage error before reading it."""
    app: App | None = ctx.obj if isinstance(ctx.obj, App) else None
    return bool(ctx.meta.get(_JSON_TYPED)) or (app is not None and app.json)


def _click_error(ctx: click.Context, exc: click.ClickException) -> None:
    """With --json, a usage error is one JSON document on stdout too; click prints the message."""
    if _wants_json(ctx):
        _write_json({"error": {"type": type(exc).__name__, "message": exc.format_message(), "exit_code": exc.exit_code}})


# group option name -> the App field it sets
_GLOBAL_OPTIONS = {"home": "home", "ledger": "ledger", "store": "store", "as_json": "json", "verbose": "verbose", "quiet": "quiet"}


def _after_command(option: click.Option, field: str) -> click.Option:
    """The root's global option once more, for a command: given there, it overrides the root's."""

    def apply(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        app = ctx.find_object(App)
        if app is not None and ctx.get_parameter_source(field) is ParameterSource.COMMANDLINE:
            setattr(app, field, value)
            if field == "ledger":
                _select_ledger(value)

    return click.Option(
        [field, *option.opts, *option.secondary_opts],
        type=option.type,
        is_flag=option.is_flag,
        count=option.count,
        help=option.help,
        expose_value=False,
        callback=_checked_ledger(apply) if field == "ledger" else apply,
    )


class CommandsGroup(click.Group):
    """Gives every command it holds the global options, so they may follow the command as people
    type them (`batchrunner status RUN --json`); given in both places, the one after the command wins."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        cmd.params.extend(
            _after_command(option, _GLOBAL_OPTIONS[option.name])
            for option in cli.params
            if isinstance(option, click.Option) and option.name in _GLOBAL_OPTIONS
        )
        super().add_command(cmd, name)


class BatchrunnerGroup(CommandsGroup):
    """Maps every error to its exit code and a message, in one place."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        typed = args[: args.index("--")] if "--" in args else args
        ctx.meta[_JSON_TYPED] = "--json" in typed
        try:
            return super().parse_args(ctx, args)
        except click.ClickException as exc:
            _click_error(ctx, exc)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (KeyboardInterrupt, click.Abort):  # Ctrl-C outside any run (the pipeline maps it inside one)
            _stopped(ctx, Interrupted("interrupted"))
        except (Detached, Interrupted) as exc:
            _stopped(ctx, exc)
        except BatchrunnerError as exc:
            _fail(ctx, exc.exit_code, exc.to_dict(), exc.message)
        except click.exceptions.Exit:
            raise
        except click.ClickException as exc:
            _click_error(ctx, exc)
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


class StateHome(click.Path):
    """A folder that is not an empty path, which would quietly make the working folder the state
    home. click takes an empty BATCHRUNNER_HOME for unset, which would quietly ignore it: refused too."""

    def __init__(self) -> None:
        super().__init__(file_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        defaulted = ctx is not None and param is not None and param.name is not None and (
            ctx.get_parameter_source(param.name) is ParameterSource.DEFAULT
        )
        if value == "" or (defaulted and os.environ.get(settings.HOME) == ""):
            self.fail(
                f"the state home is an empty path (from --home or {settings.HOME}): name a folder, "
                "or leave both unset for ./.batchrunner",
                param,
                ctx,
            )
        return super().convert(value, param, ctx)


def _ledger_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A ledger URL of a known form (usage error, exit 2, otherwise); its password never shown."""
    from batchrunner.errors import InputError
    from batchrunner.ledger.location import parse

    if value is None:
        return None
    try:
        parse(value)
    except InputError as exc:
        raise click.BadParameter(exc.problems[0].message, ctx, param) from None
    return value


def _checked_ledger(apply: Any) -> Any:
    def check_then_apply(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        apply(ctx, param, _ledger_url(ctx, param, value))

    return check_then_apply


def _select_ledger(url: str | None) -> None:
    """Name this invocation's ledger (or none: BATCHRUNNER_LEDGER, else the home's). A process
    that has not loaded the ledger has nothing to reset: `validate` and `serve` stay fast."""
    if url is None and "batchrunner.ledger.location" not in sys.modules:
        return
    from batchrunner.ledger.location import select

    select(url)


class Finite(click.FloatRange):
    """A FloatRange that also refuses nan and inf, which pass every comparison or none."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


@click.group(cls=BatchrunnerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=StateHome(),
    envvar=settings.HOME,
    default=".batchrunner",
    show_default=True,
    help="State home: the ledger, run folders, the local emulator's data.",
)
@click.option(
    "--ledger",
    envvar=settings.LEDGER,
    callback=_ledger_url,
    metavar="URL",
    help="The ledger: sqlite:///path/ledger.sqlite3 or postgresql://user@host/db (default: the state home's file).",
)
@click.option(
    "--store",
    envvar=settings.STORE,
    metavar="FOLDER|URL",
    help="Where new runs keep their request files, rows and raw results: a folder, or an s3://, gs:// or "
    "az:// URL (extras s3, gcs, azure). A run remembers its store.  [default: the state home]",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout and nothing else there.")
@click.option("-v", "--verbose", count=True, help="More detail; tracebacks for unexpected errors.")
@click.option("-q", "--quiet", is_flag=True, help="No progress or notices on stderr.")
@click.version_option(package_name="batchrunner")
@click.pass_context
def cli(ctx: click.Context, home: Path, ledger: str | None, store: str | None, as_json: bool, verbose: int, quiet: bool) -> None:
    """Run Claude at scale through Anthropic's Message Batches API."""
    ctx.obj = App(home=home, json=as_json, verbose=verbose, quiet=quiet, ledger=ledger, store=store or None)
    _select_ledger(ledger)


def _complete_run(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of RUN: the ids in the state home the line names (or the default one)."""
    from batchrunner.ledger import known_run_ids

    home = ctx.find_root().params.get("home")
    return [run_id for run_id in known_run_ids(Path(home)) if run_id.startswith(incomplete)] if home else []


# checking a job


def _validate_text(job: Path, report: CompileReport) -> str:
    from batchrunner.pricing import usd

    shards = report.shards
    lines = [f"{job}: valid · {report.requests:,} requests in {len(shards)} shard{'s' if len(shards) != 1 else ''}"]
    lines += [f"  shard {s.index:03d}: {s.requests:,} requests, {s.bytes:,} bytes" for s in shards[:10]]
    if len(shards) > 10:
        lines.append(f"  ... and {len(shards) - 10} more shards")
    if report.cost_low_usd is None or report.cost_high_usd is None:
        cost = f"cost unknown for {report.model} (the catalog has no price for it: add a pricing: block to the spec)"
    else:
        cost = f"{usd(report.cost_low_usd)} – {usd(report.cost_high_usd)} at batch prices ({report.model})"
    lines.append(f"bytes: {report.bytes:,} · estimated input tokens: ~{report.estimated_input_tokens:,}")
    if report.attachments is not None:
        files = report.attachments.distinct()
        lines.append(f"attachments: {len(files):,} distinct file(s), {report.attachments.total_bytes:,} bytes "
                     "(uploaded by submit; not in the token estimate)")
    lines.append(f"cost: {cost}")
    if report.cache is not None and (report.cache["cached"] or report.cache["duplicates"]):
        c = report.cache
        low, high = c["cost_low_usd"], c["cost_high_usd"]
        to_send = "cost unknown" if low is None or high is None else f"{usd(low)} – {usd(high)}"
        lines.append(f"cache: {c['sent']:,} request(s) would be sent ({to_send}); {c['cached']:,} answered from the "
                     f"cache, {c['duplicates']:,} the same as an earlier row's")
    lines += [f"warning: {warning}" for warning in report.warnings]
    return "\n".join(lines)


@cli.command()
@click.argument("job", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def validate(ctx: click.Context, job: Path) -> None:
    """Compile JOB without sending or writing anything; show its requests, shards, size and cost.

    Exit 0 if the job is valid, 2 with every problem (file:line) if not.
    """
    from batchrunner.answer_cache import validation_planner
    from batchrunner.compile import validate_job

    app: App = ctx.obj
    report = validate_job(job, app.home, validation_planner)
    app.emit(report.to_dict(), _validate_text(job, report))


# running jobs


class Progress:
    """Progress on a terminal: one line, redrawn in place every second from the last known
    state (polls back off to a minute apart; the clock should not). Silent without a TTY or with -q."""

    def __init__(self, app: App) -> None:
        self.enabled = not app.quiet and not app.json and sys.stderr.isatty()
        self.started = time.monotonic()
        self.state: tuple[str, int, int, dict[str, int]] | None = None
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.ticker: threading.Thread | None = None

    def __call__(self, run: Run, batches: list[Batch]) -> None:
        if not self.enabled:
            return
        ended = sum(1 for batch in batches if batch.state in FINISHED_STATES)
        counts: dict[str, int] = {}
        for batch in batches:
            for status, n in (batch.request_counts or {}).items():
                counts[status] = counts.get(status, 0) + n
        with self.lock:
            self.state = (run.id, ended, len(batches), counts)
        if self.ticker is None:
            self.stop.clear()
            self.ticker = threading.Thread(target=self._tick, name="batchrunner-progress", daemon=True)
            self.ticker.start()
        self._draw()

    def _tick(self) -> None:
        while not self.stop.wait(1.0):
            self._draw()

    def _draw(self) -> None:
        with self.lock:
            if self.state is None:
                return
            run_id, ended, total, counts = self.state
            elapsed = time.monotonic() - self.started
            finished = sum(n for status, n in counts.items() if status != "processing")
            shown = " · ".join(f"{n:,} {status}" for status, n in counts.items() if n) or "waiting"
            rate = f" · {finished / elapsed:,.0f} requests/s" if finished else ""
            seconds = int(elapsed)
            line = f"{run_id}: {ended}/{total} batches ended · {shown} · {seconds // 60}m{seconds % 60:02d}s{rate}"
            click.echo(f"\r\x1b[2K{line}", nl=False, err=True)

    def done(self) -> None:
        """End the line, so what comes next starts on its own."""
        if self.ticker is not None:
            self.stop.set()
            self.ticker.join()
            self.ticker = None
        with self.lock:
            if self.state is not None:
                click.echo("", err=True)
                self.state = None


def _events(app: App, progress: Progress | None = None) -> Events:
    from batchrunner.pipeline import Events

    def notice(message: str) -> None:
        if progress is not None:
            progress.done()
        app.notice(message)

    def log_poll(polled: Polled) -> None:
        """-v: one line per poll, timestamped, so a cron log shows what the tool is waiting for."""
        if progress is not None:
            progress.done()
        wait = "" if polled.next_in is None else f", next in {polled.next_in:.1f} s"
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        _echo(f"{when} poll {polled.batch_id} {polled.status} ({polled.done:,}/{polled.total:,} done){wait}", err=True)

    def warning(message: str) -> None:
        if progress is not None:
            progress.done()
        _echo(f"warning: {message}", err=True)

    return Events(
        notice=notice,
        warning=warning,
        progress=progress or (lambda run, batches: None),
        poll=log_poll if app.verbose else (lambda polled: None),
    )


def _summary_text(outcome: Outcome) -> str:
    from batchrunner.paths import shown_target

    s = outcome.summary
    counts = " · ".join(f"{n:,} {status}" for status, n in s["counts"].items() if n)
    cost = "cost unknown" if s["cost_usd"] is None else f"${s['cost_usd']:.4f} at batch prices"
    lines = [
        f"run {outcome.run.id}: {outcome.state} · {counts or 'no requests'}",
        f"tokens: {s['input_tokens']:,} in / {s['output_tokens']:,} out · {cost} · "
        f"{s['polls']} status poll{'s' if s['polls'] != 1 else ''} ({s['polls_per_batch']} per batch)",
    ]
    spared = []
    if s["cached"]:
        saved = "" if s["cost_saved_usd"] is None else f" (saved ${s['cost_saved_usd']:.4f})"
        spared.append(f"{s['cached']:,} answered from the cache{saved}")
    if s["duplicates"]:
        spared.append(f"{s['duplicates']:,} sent once for an earlier row with the same request")
    if spared:
        lines.append("cache: " + " · ".join(spared))
    if s["cache_write_tokens"] or s["cache_read_tokens"]:
        saved = "" if s["prompt_cache_saved_usd"] is None else f" · saved ${s['prompt_cache_saved_usd']:.4f}"
        lines.append(f"prompt cache: {s['cache_write_tokens']:,} tokens written / {s['cache_read_tokens']:,} read{saved}")
    lines.extend(f"warning: {warning}" for warning in s["warnings"])
    if s["errors_by_type"]:
        lines.append("errors: " + ", ".join(f"{n:,} {kind}" for kind, n in s["errors_by_type"].items()))
    if s["output_invalid"]:
        lines.append(f"output_invalid: {s['output_invalid']:,} answer(s) not valid under output_schema (parsed: null)")
    run_id = outcome.run.id
    if outcome.state == RunState.DONE:
        lines.append(f"output: {shown_target(outcome.run.output_path)}")
    elif outcome.state == RunState.ENDED:
        lines.append(f"ended — run `batchrunner collect {run_id}` to download the results and write the output")
    elif outcome.exit_code == EXIT_RUNNING:
        lines.append(f"still running; come back with `batchrunner watch {run_id}` or `batchrunner collect {run_id}`")
    if outcome.exit_code == EXIT_INCOMPLETE:
        lines.extend(_retry_hints(outcome))
    return "\n".join(lines)


def _retry_hints(outcome: Outcome) -> list[str]:
    """What to do about the failures: only commands that would find something to send."""
    from batchrunner.retry import NEVER_RETRIED_BY_DEFAULT

    s, run_id = outcome.summary, outcome.run.id
    errors = s["errors_by_type"]
    by_default = sum(n for kind, n in errors.items() if kind not in NEVER_RETRIED_BY_DEFAULT) + s["counts"]["expired"]
    hints = []
    if by_default:
        hints.append(f"{by_default:,} request(s) did not succeed; `batchrunner retry {run_id}` sends just those again")
    if s["output_invalid"]:
        hints.append(
            f"{s['output_invalid']:,} answer(s) failed output_schema; "
            f"`batchrunner retry {run_id} --error-type output_invalid` asks again"
        )
    for kind in NEVER_RETRIED_BY_DEFAULT:
        if errors.get(kind):
            hints.append(
                f"{errors[kind]:,} request(s) were refused ({kind}; the output's error messages say why): a retry "
                "sends the same requests, so fix the job and submit it again; if what was refused was on the "
                f"server's side (a file or a model since made available), `batchrunner retry {run_id} --error-type {kind}`"
            )
    if s["counts"]["canceled"]:
        hints.append(f"{s['counts']['canceled']:,} request(s) were canceled; `batchrunner retry {run_id} --status canceled` sends them again")
    if s["counts"]["pending"]:
        hints.append(f"{s['counts']['pending']:,} request(s) have no result; `batchrunner retry {run_id} --status pending` sends them again")
    return hints


def _finish(ctx: click.Context, outcome: Outcome) -> None:
    app: App = ctx.obj
    app.emit(outcome.to_dict(), _summary_text(outcome))
    ctx.exit(outcome.exit_code)


@cli.command()
@click.argument("job", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--run-id", help="Name the run; submitting again with the same id continues it instead of starting over.")
@click.option("--detach", is_flag=True, help="Return once the batches are created (exit 4); collect later.")
@click.option("--timeout", type=Finite(min=0), help="Stop waiting after this many seconds (exit 4).")
@click.option(
    "--backend",
    type=click.Choice(settings.BACKENDS),
    envvar=settings.BACKEND,
    help="anthropic (the real API), local (the built-in emulator), auto (anthropic if ANTHROPIC_API_KEY is set).",
)
@click.option("--force", is_flag=True, help="Submit even if the worst-case cost is over the spec's budget_usd.")
@click.option("--no-cache", is_flag=True, help="Send every request, even those with a cached answer (answers are still cached).")
@click.pass_context
def submit(
    ctx: click.Context,
    job: Path,
    run_id: str | None,
    detach: bool,
    timeout: float | None,
    backend: str | None,
    force: bool,
    no_cache: bool,
) -> None:
    """Compile JOB, create its batches, wait for them and write the joined output."""
    from batchrunner import pipeline

    app: App = ctx.obj
    progress = Progress(app)
    try:
        outcome = pipeline.submit(
            job,
            home=app.home,
            store=app.store,
            run_id=run_id,
            backend=backend,
            detach=detach,
            timeout=timeout,
            force=force,
            no_cache=no_cache,
            events=_events(app, progress),
        )
    finally:
        progress.done()
    _finish(ctx, outcome)


@cli.command()
@click.argument("run_id", metavar="RUN", shell_complete=_complete_run)
@click.option("--timeout", type=Finite(min=0), help="Stop waiting after this many seconds (exit 4).")
@click.pass_context
def watch(ctx: click.Context, run_id: str, timeout: float | None) -> None:
    """Reattach to RUN: wait until its batches end, then collect."""
    from batchrunner import pipeline

    app: App = ctx.obj
    progress = Progress(app)
    try:
        outcome = pipeline.watch(run_id, home=app.home, timeout=timeout, events=_events(app, progress))
    finally:
        progress.done()
    _finish(ctx, outcome)


@cli.command()
@click.argument("run_id", metavar="RUN", required=False, shell_complete=_complete_run)
@click.option("--all", "all_runs", is_flag=True, help="Collect every run that is not done.")
@click.pass_context
def collect(ctx: click.Context, run_id: str | None, all_runs: bool) -> None:
    """Download and join the results of every ended batch; exit 4 if some still run."""
    from batchrunner import pipeline

    app: App = ctx.obj
    if bool(run_id) == all_runs:
        raise click.UsageError("name one RUN, or pass --all")
    if run_id:
        _finish(ctx, pipeline.collect(run_id, home=app.home, events=_events(app)))
    _finish_many(ctx, pipeline.collect_all(home=app.home, events=_events(app)), "nothing to collect")


@cli.command()
@click.argument("run_id", metavar="[RUN]", required=False, shell_complete=_complete_run)
@click.pass_context
def status(ctx: click.Context, run_id: str | None) -> None:
    """Show one run (default: the latest): its batches and request counts, as the ledger knows them.

    Exits with the run's outcome: 0 done and every request succeeded, 3 done with failures, 4 not done.
    """
    from batchrunner import pipeline

    app: App = ctx.obj
    outcome = pipeline.status(run_id, home=app.home)
    rows = [
        f"  attempt {b.attempt} batch {b.shard + 1}: {_batch_state(b):<11} {b.batch_id or '-':<34} "
        + " ".join(f"{k}={v}" for k, v in (b.request_counts or {}).items() if v)
        for b in outcome.batches
    ]
    app.emit(outcome.to_dict(), _summary_text(outcome) + ("\n" + "\n".join(rows) if rows else ""))
    ctx.exit(outcome.exit_code)


def _batch_state(batch: Batch) -> str:
    """A submitted batch being canceled says so (the API's `canceling`); the ledger's state otherwise."""
    return "canceling" if batch.state == BatchState.SUBMITTED and batch.processing_status == "canceling" else str(batch.state)


@cli.command()
@click.pass_context
def runs(ctx: click.Context) -> None:
    """List the runs in the state home."""
    from batchrunner import pipeline

    app: App = ctx.obj
    outcomes = pipeline.list_runs(home=app.home)
    lines = [
        f"{o.run.id:<40} {o.run.job_name:<16} {o.run.created_at[:19]}  {o.state:<10} "
        + " ".join(f"{n} {status}" for status, n in o.summary["counts"].items() if n)
        for o in outcomes
    ]
    app.emit(
        {"runs": [pipeline.run_info(o.run, o.state) | {"counts": o.summary["counts"]} for o in outcomes]},
        "\n".join(lines) or "no runs yet",
    )


@cli.command()
@click.argument("run_id", metavar="RUN", shell_complete=_complete_run)
@click.pass_context
def cancel(ctx: click.Context, run_id: str) -> None:
    """Cancel RUN's running batches; `watch` or `collect` then gathers their partial results."""
    from batchrunner import pipeline

    app: App = ctx.obj
    outcome = pipeline.cancel(run_id, home=app.home, events=_events(app))
    app.emit(outcome.to_dict(), _summary_text(outcome))


# the ledger


@cli.group("ledger", cls=CommandsGroup)
def ledger_group() -> None:
    """The ledger itself: copy it to another database."""


@ledger_group.command("copy")
@click.option("--to", "target", required=True, metavar="URL", callback=_ledger_url,
              help="The ledger to fill: sqlite:///path or postgresql://...; it must be empty.")
@click.pass_obj
def ledger_copy(app: App, target: str) -> None:
    """Copy every table of this ledger (--ledger, or the state home's) into an empty one."""
    from batchrunner.ledger.copy import copy_ledger

    copied = copy_ledger(app.home, target)
    app.emit(
        {"copied": copied},
        "\n".join(f"{table}: {count:,} row(s)" for table, count in copied.items())
        + "\nnext: use the copy with --ledger URL (or BATCHRUNNER_LEDGER); the old ledger is unchanged",
    )


# the answer cache


@cli.group("cache", cls=CommandsGroup)
def cache_group() -> None:
    """The answers cached by request key (submit sends only what is not cached)."""


@cache_group.command("stats")
@click.pass_context
def cache_stats(ctx: click.Context) -> None:
    """How many answers are cached, per backend, and how much they hold."""
    from batchrunner.answer_cache import cache_stats as stats

    app: App = ctx.obj
    scopes = stats(app.home)
    lines = [
        f"{s['scope']}: {s['entries']:,} answer(s), {s['bytes']:,} bytes, {s['input_tokens']:,} in / "
        f"{s['output_tokens']:,} out tokens, {s['oldest'][:19]} – {s['newest'][:19]}"
        for s in scopes
    ]
    app.emit({"scopes": scopes, "entries": sum(s["entries"] for s in scopes)}, "\n".join(lines) or "the cache is empty")


@cache_group.command("clear")
@click.option("--older-than", metavar="AGE", help="Only answers cached longer ago than AGE (7d, 12h, 30m, 90s, 2w).")
@click.pass_context
def cache_clear(ctx: click.Context, older_than: str | None) -> None:
    """Forget cached answers (all, or those older than --older-than): their requests are sent again."""
    from batchrunner.answer_cache import clear_cache
    from batchrunner.durations import parse_age

    app: App = ctx.obj
    try:
        age = None if older_than is None else parse_age(older_than)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    removed = clear_cache(app.home, age)
    app.emit({"removed": removed}, f"removed {removed:,} cached answer(s)")


# the Files API


@cli.group("files", cls=CommandsGroup)
def files_group() -> None:
    """The Files API: upload, list, info, download, delete (on the chosen backend)."""


def _backend_option(command: Any) -> Any:
    return click.option(
        "--backend",
        type=click.Choice(settings.BACKENDS),
        envvar=settings.BACKEND,
        help="anthropic (the real API), local (the built-in emulator), auto (anthropic if ANTHROPIC_API_KEY is set).",
    )(command)


def _files_api(app: App, backend: str | None) -> Any:
    """The Api for a files command; the local emulator keeps its files under the state home."""
    from batchrunner import client

    return client.connect(_backend(app, backend), app.home)


def _backend(app: App, backend: str | None) -> Any:
    """The backend of a command that is not about a run, resolved once; the simulated notice said once."""
    from batchrunner import client

    resolved = client.resolve_backend(backend, None, os.environ)
    if resolved.simulated:
        app.notice(client.simulated_notice(app.home))
    return resolved


def _file_text(meta: dict[str, Any]) -> str:
    keys = ("id", "filename", "size_bytes", "mime_type", "purpose", "created_at", "downloadable", "expires_at")
    return "\n".join(f"{key + ':':<14}{meta.get(key) if meta.get(key) is not None else '-'}" for key in keys)


def _files_table(listing: dict[str, Any], forward: bool) -> str:
    rows = [
        (m["id"], m["filename"], f"{m['size_bytes']:,}", m["mime_type"], m.get("purpose") or "-",
         str(m["created_at"])[:19].replace("T", " "))
        for m in listing["data"]
    ]
    if not rows:
        return "no files"
    header = ("ID", "FILENAME", "SIZE", "MIME TYPE", "PURPOSE", "CREATED")
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    lines = [
        "  ".join(cell.rjust(w) if i == 2 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
        for row in (header, *rows)
    ]
    if listing["has_more"]:
        cursor = f"--after-id {listing['last_id']}" if forward else f"--before-id {listing['first_id']}"
        lines.append(f"more: batchrunner files list {cursor} (or --all)")
    return "\n".join(lines)


@files_group.command("upload")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--purpose", type=click.Choice(["batch", "user_data"]), default="user_data", show_default=True,
    help="Sent as a form field; a server that refuses it gets the file without.",
)
@_backend_option
@click.pass_obj
def files_upload(app: App, path: Path, purpose: str, backend: str | None) -> None:
    """Upload PATH (at most 500 MB); print its file id."""
    from batchrunner import files

    with _files_api(app, backend) as api:
        meta = files.upload_file(api, path, purpose=purpose)
    if not meta["purpose_accepted"]:
        app.notice(f"the server refused the purpose field; {meta['id']} was uploaded without it")
    app.emit(meta, f"uploaded {path} as {meta['id']} ({meta['size_bytes']:,} bytes, {meta['mime_type']}, purpose {purpose})")


@files_group.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="Files per page.")
@click.option("--after-id", help="Start after this file: the page of older files.")
@click.option("--before-id", help="Start before this file: the page of newer files.")
@click.option("--all", "all_pages", is_flag=True, help="Every page in that direction, not just one.")
@_backend_option
@click.pass_obj
def files_list(
    app: App, limit: int, after_id: str | None, before_id: str | None, all_pages: bool, backend: str | None
) -> None:
    """List files, newest first: id, filename, size, mime type, purpose, created."""
    from batchrunner import files

    if after_id and before_id:
        raise click.UsageError("give --after-id or --before-id, not both: they page in opposite directions")
    with _files_api(app, backend) as api:
        listing = files.list_files(api, limit=limit, after_id=after_id, before_id=before_id, all_pages=all_pages)
    app.emit(listing, _files_table(listing, forward=before_id is None))


@files_group.command("info")
@click.argument("file_id", metavar="ID")
@_backend_option
@click.pass_obj
def files_info(app: App, file_id: str, backend: str | None) -> None:
    """Show one file's metadata."""
    from batchrunner import files

    with _files_api(app, backend) as api:
        meta = files.file_info(api, file_id)
    app.emit(meta, _file_text(meta))


@files_group.command("download")
@click.argument("file_id", metavar="ID")
@click.option(
    "-o", "--output", "dest", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the content (replaced atomically).",
)
@_backend_option
@click.pass_obj
def files_download(app: App, file_id: str, dest: Path, backend: str | None) -> None:
    """Download a file's content. The API lets out only files that skills or code execution made."""
    from batchrunner import files

    with _files_api(app, backend) as api:
        result = files.download_file(api, file_id, dest)
    app.emit(result, f"downloaded {file_id} to {dest} ({result['bytes']:,} bytes)")


@files_group.command("delete")
@click.argument("file_id", metavar="ID")
@_backend_option
@click.pass_obj
def files_delete(app: App, file_id: str, backend: str | None) -> None:
    """Delete a file on the server; it cannot be recovered."""
    from batchrunner import files

    with _files_api(app, backend) as api:
        result = files.delete_file(api, file_id)
    app.emit(result, f"deleted {file_id}")


# models


def _tokens(count: int | None) -> str:
    if count is None:
        return "?"
    return f"{count // 1_000_000}M" if count % 1_000_000 == 0 else f"{count // 1000:,}K"


def _per_mtok(prices: dict[str, float] | None) -> tuple[str, str]:
    if prices is None:
        return "?", "?"
    return f"{prices['input']:g}", f"{prices['output']:g}"


def _models_table(listing: dict[str, Any]) -> str:
    rows = []
    for model in listing["models"]:
        out = _tokens(model["max_tokens"])
        if model["batch_max_tokens"]:
            out += f" ({_tokens(model['batch_max_tokens'])} beta)"
        batch_in, batch_out = _per_mtok(model["batch_price_per_mtok"])
        for tier in model["batch_price_tiers"]:
            tier_in, tier_out = _per_mtok(tier)
            batch_in += f" / {tier_in} >{_tokens(tier['above_prompt_tokens'])}"
            batch_out += f" / {tier_out} >{_tokens(tier['above_prompt_tokens'])}"
        rows.append((model["id"], model["lifecycle"], _tokens(model["max_input_tokens"]), out,
                     ",".join(model["thinking"]) or "-", batch_in, batch_out))
    header = ("ID", "LIFECYCLE", "CONTEXT", "MAX OUTPUT", "THINKING", "BATCH IN $/MTOK", "BATCH OUT $/MTOK")
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in (header, *rows)]
    lines.append(f"from {listing['source']}; prices from the catalog of {listing['catalog_as_of']} (? = unknown)")
    return "\n".join(lines)


@cli.command()
@click.option("--offline", is_flag=True, help="The built-in catalog, without asking the backend.")
@_backend_option
@click.pass_obj
def models(app: App, offline: bool, backend: str | None) -> None:
    """The models the backend offers (its Models API): limits, thinking types, batch prices."""
    from batchrunner import client
    from batchrunner.models import offered_models

    if offline:
        listing = offered_models(None)
    else:
        with client.connect(_backend(app, backend), app.home) as api:
            listing = offered_models(api)
    app.emit(listing, _models_table(listing))


# the emulator

RATE = Finite(0.0, 1.0)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8787, show_default=True, help="Port; 0 picks a free one.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where batches and files are kept  [default: <home>/emulator]",
)
@click.option("--seed", type=click.IntRange(-(2**63), 2**63 - 1), default=0, show_default=True, help="The same seed and requests give the same results.")
@click.option(
    "--processing-seconds", type=Finite(min=0.0), default=2.0, show_default=True, help="How long a batch takes."
)
@click.option("--errored-rate", type=RATE, default=0.0, show_default=True, help="Share of requests ending errored (retryable).")
@click.option("--expired-rate", type=RATE, default=0.0, show_default=True, help="Share of requests ending expired.")
@click.option("--fault-rate", type=RATE, default=0.0, show_default=True, help="Share of API calls answered 429, 500 or 529.")
@click.option("--truncate-rate", type=RATE, default=0.0, show_default=True, help="Share of results downloads cut off.")
@click.option(
    "--models", "models_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A model catalog (JSON, the shape of the packaged one) to serve and judge requests by.",
)
@click.option("--keep-order", is_flag=True, help="Results in request order, not shuffled by the seed.")
@click.option(
    "--rpm", "requests_per_minute", type=click.IntRange(1), default=4000, show_default=True,
    help="API calls allowed per minute per API key (a token bucket); past it, 429 with retry-after.",
)
@click.option(
    "--reject-unknown-fields", is_flag=True,
    help="Strict: a form field the API does not define (such as `purpose` on uploads) is a 400.",
)
@click.pass_obj
def serve(
    app: App, host: str, port: int, data_dir: Path | None, seed: int, processing_seconds: float,
    errored_rate: float, expired_rate: float, fault_rate: float, truncate_rate: float,
    models_file: Path | None, keep_order: bool, requests_per_minute: int, reject_unknown_fields: bool,
) -> None:
    """Run the local Anthropic API emulator in the foreground until Ctrl-C."""
    from batchrunner.atomic import private_folder
    from batchrunner.emulator import (  # only this command pays for loading it
        EmulatorConfig,
        serve_forever,
    )

    config = EmulatorConfig(
        data_dir=data_dir or app.home / "emulator", host=host, port=port, seed=seed,
        processing_seconds=processing_seconds, errored_rate=errored_rate, expired_rate=expired_rate,
        fault_rate=fault_rate, truncate_rate=truncate_rate, models_file=models_file, keep_order=keep_order,
        reject_unknown_fields=reject_unknown_fields, requests_per_minute=requests_per_minute,
    )
    private_folder(config.data_dir)  # and the state home it is in, 0700 like every folder there

    def ready(base_url: str) -> None:
        app.notice(f"emulator on {base_url} (data in {config.data_dir}); use it with "
                   f"ANTHROPIC_BASE_URL={base_url} ANTHROPIC_API_KEY=anything")

    try:
        serve_forever(config, on_ready=ready)
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):  # the port is taken, or the host is not this machine's
            raise
        raise BatchrunnerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port (0 takes a free one)") from None


@cli.command()
@click.argument("run_id", metavar="[RUN]", required=False, shell_complete=_complete_run)
@click.option("--all", "all_runs", is_flag=True, help="Resume every run that is not done.")
@click.option("--detach", is_flag=True, help="Only reconcile and submit; do not wait (exit 4).")
@click.pass_context
def resume(ctx: click.Context, run_id: str | None, all_runs: bool, detach: bool) -> None:
    """Finish whatever was interrupted (RUN, default: the latest; or --all): reconcile uncertain
    creates, submit, wait, collect."""
    from batchrunner import pipeline

    app: App = ctx.obj
    if run_id and all_runs:
        raise click.UsageError("name one RUN, or pass --all, not both")
    if not run_id and not all_runs:
        run_id = pipeline.status(None, home=app.home).run.id  # the latest run, as `status` shows
    progress = Progress(app)
    try:
        if run_id:
            outcome = pipeline.resume(run_id, home=app.home, detach=detach, events=_events(app, progress))
        else:
            outcomes = pipeline.resume_all(home=app.home, detach=detach, events=_events(app, progress))
    finally:
        progress.done()
    if run_id:
        _finish(ctx, outcome)
    _finish_many(ctx, outcomes, "nothing to resume")


@cli.command()
@click.argument("run_id", metavar="RUN", shell_complete=_complete_run)
@click.option(
    "--status",
    "statuses",
    help="Comma-separated latest statuses to retry: errored, expired, canceled, pending  "
    "[default: errored,expired; with --error-type: only those errors]",
)
@click.option(
    "--error-type",
    "error_types",
    multiple=True,
    help="Only requests that failed with this error type (repeatable); output_invalid selects answers "
    "that failed output_schema.",
)
@click.option("--custom-id", "custom_ids", multiple=True, help="Exactly this request (repeatable).")
@click.option(
    "--ids-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file of custom_ids, one a line; blank lines and # comments are skipped.",
)
@click.option("--detach", is_flag=True, help="Return once the new batches are created (exit 4).")
@click.option("--timeout", type=Finite(min=0), help="Stop waiting after this many seconds (exit 4).")
@click.pass_context
def retry(
    ctx: click.Context,
    run_id: str,
    statuses: str | None,
    error_types: tuple[str, ...],
    custom_ids: tuple[str, ...],
    ids_file: Path | None,
    detach: bool,
    timeout: float | None,
) -> None:
    """Send only RUN's failed requests again; their results merge into the same output.

    invalid_request_error and output_invalid rows are retried only when named with
    --error-type or --custom-id.
    """
    from batchrunner import pipeline
    from batchrunner.retry import Selection, read_ids_file

    app: App = ctx.obj
    lines = read_ids_file(ids_file) if ids_file else {}
    selection = Selection(
        statuses=None if statuses is None else tuple(part.strip() for part in statuses.split(",") if part.strip()),
        error_types=error_types or None,
        custom_ids=tuple(dict.fromkeys((*custom_ids, *lines))),
        ids_file=ids_file,
        ids_file_lines=lines,
    )
    progress = Progress(app)
    try:
        outcome = pipeline.retry(
            run_id, selection, home=app.home, detach=detach, timeout=timeout, events=_events(app, progress)
        )
    finally:
        progress.done()
    _finish(ctx, outcome)


def _finish_many(ctx: click.Context, outcomes: list[Outcome], nothing: str) -> None:
    app: App = ctx.obj
    for outcome in outcomes:
        if outcome.skipped:  # even with -q: a cron job's log must say why it exits 4
            click.echo(f"skipped: {outcome.skipped}", err=True)
    app.emit(
        {"runs": [outcome.to_dict() for outcome in outcomes]},
        "\n\n".join(_summary_text(outcome) for outcome in outcomes) or nothing,
    )
    ctx.exit(max((outcome.exit_code for outcome in outcomes), default=0))


def main() -> None:
    cli(prog_name="batchrunner")
