"""The ``gc`` command line: parse, validate, call one library function, render.

Subcommands load lazily, so ``gc --help`` starts without importing DuckDB, Arrow or
SQLAlchemy. Every error the library raises on purpose is a ``GCError``; ``main``
turns it into ``FAILED: ...`` and the exit code documented in ``gc --help``.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import click

from artifact_gc import __version__
from artifact_gc.errors import (
    EXIT_CODES_HELP,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    GCError,
    caused_by_interrupt,
)

#: The key of click's context object saying that the command runs as the ``gc``
#: process itself (``main``), which it may then keep from being interrupted once its
#: work is committed (a published manifest).
OWNS_PROCESS = "owns_process"

#: command name -> "module:attribute" under artifact_gc.cli
COMMANDS = {
    "mark": "mark:mark_command",
    "sweep": "sweep:sweep_command",
    "status": "sweep:status_command",
    "show": "review:show_command",
    "query": "review:query_command",
    "filter": "review:filter_command",
    "diff": "review:diff_command",
    "report": "review:report_command",
    "history": "review:history_command",
    "why": "review:why_command",
    "demo": "demo:demo_command",
    "collect": "collect:collect_command",
    "restore": "restore:restore_command",
    "trash": "trash:trash_group",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when they are used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._load(name) is not None]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        try:
            module = importlib.import_module(f"artifact_gc.cli.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"artifact_gc.cli.{module_name}":
                return None
            raise
        command: click.Command = getattr(module, attribute)
        return command

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise OneLineUsageError.of(exc) from None
        except KeyboardInterrupt:
            # Before any command ran (loading it): nothing was done.
            interrupted(parent, "interrupted (Ctrl-C) before the command started")
            raise  # not reached: interrupted() exits

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise OneLineUsageError.of(exc) from None
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except GCError as exc:
            if (ctx.obj or {}).get("traceback"):
                raise
            click.secho(f"FAILED: {one_line(exc.message)}", fg="red", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            # A command that can say more (the sweep: what it finished, how to resume;
            # the mark: whether it published) raises Interrupted itself.
            if (ctx.obj or {}).get("traceback"):
                raise
            interrupted(ctx, "interrupted (Ctrl-C)")
        except Exception as exc:  # the last line of defence: say what broke, exit 1
            if (ctx.obj or {}).get("traceback"):
                raise
            if caused_by_interrupt(exc):
                interrupted(ctx, "interrupted (Ctrl-C)")
            click.secho(f"FAILED: unexpected {type(exc).__name__}: {one_line(str(exc))}",
                        fg="red", err=True)
            click.echo("Run again with --traceback for the full stack trace.", err=True)
            ctx.exit(EXIT_FAILURE)


def interrupted(ctx: click.Context | None, message: str) -> None:
    """Say ``FAILED: message`` and exit with the one interrupt code, 130 (not click's
    ``Aborted!`` and 1)."""
    click.secho(f"FAILED: {message}", fg="red", err=True)
    if ctx is None:
        raise SystemExit(EXIT_INTERRUPTED)
    ctx.exit(EXIT_INTERRUPTED)


def interrupts_ignored(ctx: click.Context) -> None:
    """Ignore SIGINT from now on: the command's work is committed. For the ``gc``
    process until it exits; under a caller that did not hand the process over (tests
    through CliRunner), until this command ends."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    if previous is not None and not (ctx.find_root().obj or {}).get(OWNS_PROCESS):
        ctx.call_on_close(lambda: signal.signal(signal.SIGINT, previous))


_NO_ARGS_IS_HELP: tuple[type[Exception], ...] = tuple(
    getattr(click.exceptions, name) for name in ("NoArgsIsHelpError",)
    if hasattr(click.exceptions, name)
)


class OneLineUsageError(click.UsageError):
    """A usage error shown as one ``FAILED: ...`` line, like every other failure."""

    @classmethod
    def of(cls, exc: click.UsageError) -> click.UsageError:
        # Asking for help (a group without arguments) is not a failure: keep click's.
        # (click 8.2 gave that case its own class; 8.1 has none.)
        if isinstance(exc, (cls, *_NO_ARGS_IS_HELP)):
            return exc
        return cls(exc.format_message(), exc.ctx)

    def show(self, file: Any = None) -> None:
        hint = f" (see {self.ctx.command_path} --help)" if self.ctx is not None else ""
        click.secho(f"FAILED: {one_line(self.format_message())}{hint}", fg="red", err=True,
                    file=file)


#: What SQLAlchemy appends to a driver's message: the statement, its parameters (which
#: can be thousands of ids long) and a documentation link.
_NOISE = (
    re.compile(r"\n\[SQL: .*?\](?=\n|$)", re.DOTALL),
    re.compile(r"\n\[parameters: .*?\](?=\n|$)", re.DOTALL),
    re.compile(r"\s*\(Background on this error at: [^)]*\)"),
)


#: Credentials that a library may put in an error's text: a query parameter named like
#: a secret (a token-check URL carries the token itself) and a URL's ``user:password@``.
_CREDENTIALS = (
    re.compile(r"(?i)([?&][\w.-]*(?:token|key|secret|password|signature|sig|credential)"
               r"[\w.-]*=)[^&\s'\"]+"),
    re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@"),
)


def one_line(message: str) -> str:
    """``message`` as a single line, without SQLAlchemy's appendices and without any
    credential the text carries in a URL."""
    for pattern in _NOISE:
        message = pattern.sub("", message)
    for pattern in _CREDENTIALS:
        message = pattern.sub(lambda m: m.group(1) + "***" + ("@" if m.group(0).endswith("@")
                                                              else ""), message)
    return " ".join(message.split())


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES_HELP,
)
@click.version_option(
    __version__, prog_name="artifact-gc",
    # Debian's graphviz ships another gc (/usr/bin/gc, a graph tool): say which one this is.
    message="%(prog)s %(version)s: mark-and-sweep garbage collector for ZenML artifact "
            "stores (gc mark, gc show, gc sweep). Also installed as `artifact-gc`, a name "
            "no other tool uses.",
)
@click.option("--traceback", is_flag=True, help="Show the full stack trace of a failure.")
@click.pass_context
def cli(ctx: click.Context, traceback: bool) -> None:
    """Garbage-collect ZenML artifact stores: mark, review, then sweep.

    \b
      gc mark                 decide what is garbage; writes a Parquet manifest
      gc show MANIFEST        review it (also: query, filter, diff, report, history)
      gc sweep MANIFEST       delete the candidates, re-verified against the live store
      gc demo                 the whole cycle on a sample store in a temporary folder
      gc collect --policy F   mark, brakes, then sweep under a policy file (for cron)
      gc restore MANIFEST     undo a sweep inside its undo window (default 7 days)
      gc trash empty LOC      purge what has passed its undo window
    """
    ctx.ensure_object(dict)
    ctx.obj["traceback"] = traceback


def main() -> None:
    """Console entry point for ``gc`` and ``artifact-gc``."""
    cli(prog_name="gc", obj={OWNS_PROCESS: True})
