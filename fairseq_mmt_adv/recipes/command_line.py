"""What the package's ``python -m`` commands share (standard library only)."""

import argparse
import sys
from collections.abc import Callable, Sequence


def report_errors(
    prog: str,
    errors: type[Exception] | tuple[type[Exception], ...],
    action: Callable[[], object],
    status: int = 1,
) -> int:
    """Run ``action``: 0, or for an expected error one line ``PROG: error: MESSAGE`` on stderr
    and ``status`` (no traceback: the message names the file or flag and the fix)."""
    try:
        action()
    except errors as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return status
    return 0


def file_triples(parser: argparse.ArgumentParser, values: Sequence[str], names: str) -> list[tuple]:
    """``values`` as consecutive triples, the files of one job each (``names``: the argument's
    metavar, e.g. ``"IN OUT LANG"``); any other count is the parser's usage error."""
    if len(values) % 3:
        parser.error(f"give the files as {names} triples")
    return [tuple(values[i : i + 3]) for i in range(0, len(values), 3)]
