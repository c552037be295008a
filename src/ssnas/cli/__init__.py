"""The ``ssnas`` command line.

Each subcommand lives in its own module of this package and exposes ``register(subparsers)``, which adds
its parser and sets ``func`` to a function taking the parsed ``args`` and returning an exit status.
User mistakes raise :class:`ssnas.errors.UserError` and become one line on stderr with exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ssnas.errors import UserError, one_line

# Module names under ssnas.cli, in the order `ssnas --help` lists them.
COMMANDS = [
    "profile", "data", "config", "search", "evaluate", "predict", "export", "study", "reproduce",
]


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line with exit status 2 (argparse's own status)."""

    def error(self, message):  # pragma: no cover - exercised through the CLI tests
        command = self.prog.removeprefix("ssnas").strip()
        self.exit(2, f"ssnas: error: {command + ': ' if command else ''}{message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ssnas", description="Single-stage differentiable NAS for semantic segmentation.")
    from ssnas import __version__
    parser.add_argument("--version", action="version", version=f"ssnas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"ssnas.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"ssnas.cli.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"ssnas: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ssnas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
