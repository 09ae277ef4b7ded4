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


def count_arg(noun: str, auto: bool = False):
    """An ``argparse`` type for a positive whole number of ``noun`` (``--batch``, ``--shards``), or
    the word ``auto`` when ``auto``; anything else is refused naming what was expected."""
    import argparse
    expected = f"a positive number of {noun}" + (" or auto" if auto else "")

    def parse(text):
        if auto and text == "auto":
            return text
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected.replace('positive ', '')}, got {text!r}") from None
        if n < 1:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {n}")
        return n
    return parse
