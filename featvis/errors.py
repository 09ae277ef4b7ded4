"""Exceptions for user mistakes, with messages that name the input and the way out."""


class NotFound(KeyError):
    """A layer or model name that does not exist (a ``KeyError`` whose message prints unquoted)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


class UsageError(ValueError):
    """A bad input: a model, layer, channel, file or option that cannot work as given.

    The message is one line that names the input and the fix; the CLI prints it and exits with
    status 2 (argparse's convention for usage errors) without a traceback.
    """
