"""One base class for every error a user can cause; the CLI prints it as one line and exits 2."""


class EdgepruneError(Exception):
    """Bad input: corrupt file, unsupported layer, unknown target, unmeetable budget..."""
