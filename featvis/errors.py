"""Exceptions for user mistakes, with messages that name the input and the way out."""


class NotFound(KeyError):
    """A layer or model name that does not exist (a ``KeyError`` whose message prints unquoted)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""
