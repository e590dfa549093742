"""The `biowm` command line: `biowm <verb> <domain> [options]`, `biowm domains`, `biowm demo`.

The CLI knows no domain: it looks the domain up in the registry and hands the remaining
arguments to the function the domain registered for the verb. Bad input exits with code 2
and a one-line reason.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer
from rich.console import Console
from rich.table import Table

from biowm.core.errors import InvalidInputError
from biowm.core.registry import VERBS, domains, get_domain

USAGE = """usage: biowm <verb> <domain> [options]
       biowm domains            list registered domains and the verbs they implement
       biowm demo               end-to-end demo on embedded defaults

verbs: {verbs}
`biowm <verb> <domain> --help` shows the options of one command."""


def _print_domains(console: Console) -> None:
    table = Table(title="biowm domains")
    table.add_column("domain")
    table.add_column("verbs")
    table.add_column("what it is")
    for name, domain in domains().items():
        verbs = ", ".join(v for v in VERBS if v in domain.commands)
        table.add_row(name, verbs, domain.summary)
    console.print(table)


def _run_domain_command(verb: str, args: Sequence[str]) -> int:
    if not args or args[0].startswith("-"):
        names = ", ".join(domains())
        raise InvalidInputError(f"biowm {verb}: name a domain ({names}), e.g. biowm {verb} glucose")
    domain = get_domain(args[0])
    function = domain.commands.get(verb)
    if function is None:
        offered = [v for v in VERBS if v in domain.commands]
        raise InvalidInputError(
            f"domain {domain.name!r} does not implement {verb!r}; it implements {offered}"
        )
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(function)
    command = typer.main.get_command(app)
    try:
        command.main(
            args=_expand_multiple(command, list(args[1:])),
            prog_name=f"biowm {verb} {domain.name}", standalone_mode=False,
        )
    except typer.Exit as done:
        return int(done.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 1
    except typer.TyperException as error:
        print(f"error: {error.format_message()}", file=sys.stderr)
        return 2
    return 0


def _expand_multiple(command: typer.core.TyperCommand, args: list[str]) -> list[str]:
    """Let list options take several values: `--gamma 0 1 2` -> `--gamma 0 --gamma 1 …`."""
    multiple = {name for p in command.params if getattr(p, "multiple", False)
                for name in p.opts}
    out: list[str] = []
    current: str | None = None
    for arg in args:
        if arg.startswith("--"):
            current = arg if arg in multiple else None
            out.append(arg)
        elif current is not None and out[-1] != current:
            out += [current, arg]
        else:
            out.append(arg)
    return out


def run(argv: Sequence[str]) -> int:
    """Run one CLI invocation; returns the process exit code."""
    console = Console()
    args = list(argv)
    try:
        if not args or args[0] in ("-h", "--help", "help"):
            print(USAGE.format(verbs=", ".join(VERBS)), file=sys.stdout if args else sys.stderr)
            return 0 if args else 2
        verb = args[0]
        if verb == "domains":
            _print_domains(console)
            return 0
        if verb == "demo":
            from biowm.demo import run_demo

            run_demo(args[1:])
            return 0
        if verb in VERBS:
            return _run_domain_command(verb, args[1:])
        raise InvalidInputError(
            f"unknown verb {verb!r}; verbs are {', '.join(VERBS)}, domains, demo"
        )
    except InvalidInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; no output was written", file=sys.stderr)
        return 130


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
