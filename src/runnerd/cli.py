"""The ``runnerd`` command line."""

from __future__ import annotations

import argparse

from runnerd import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runnerd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"runnerd {__version__}")
    parser.parse_args(argv)
    parser.print_help()
    return 0
