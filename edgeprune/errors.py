"""One base class for every error a user can cause; the CLI prints it as one line and exits 2."""


class EdgepruneError(Exception):
    """Bad input: corrupt file, unsupported layer, unknown target, unmeetable budget..."""


def first_line(e: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (its type name when the message is empty), for
    one-line error messages that quote a library's failure."""
    for line in str(e).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(e).__name__
