"""What the package's ``python -m`` commands share (standard library only)."""

import sys
from collections.abc import Callable


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
