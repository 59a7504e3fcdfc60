"""Command line: `tf-transformer SUBCOMMAND`. Each subcommand parses its arguments and
calls one library function; no logic lives here."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tf-transformer",
        description="Train, evaluate, decode and export Transformer translation models.",
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    del subcommands  # Subcommands are added here as their library functions land.
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except (ValueError, FileNotFoundError) as error:
        print(f"tf-transformer {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
