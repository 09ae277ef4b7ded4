"""Exceptions for user mistakes, with messages that name the input and the way out."""
from typing import Optional


class NotFound(KeyError):
    """A layer or model name that does not exist (a ``KeyError`` whose message prints unquoted)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


class UsageError(ValueError):
    """A bad input: a model, layer, channel, file or option that cannot work as given.

    The message is one line that names the input and the fix; the CLI prints it and exits with
    status 2 (argparse's convention for usage errors) without a traceback.
    """


def one_line(e: BaseException, limit: Optional[int] = 160) -> str:
    """An exception's message on one line, clipped to ``limit`` characters (``None``: whole), for
    error messages that quote a library's own error."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if limit is None or len(text) <= limit else text[:limit - 1] + "\u2026"


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


#: ``--weights``'s help where it means the model's own weights (render, topk, circuit, atlas, blocks).
WEIGHTS_HELP = "pretrained weights (default), random init from --seed (none), or a state dict file"
DEVICE_HELP = "default: auto (CUDA when present)"


def weights_argument(parser) -> None:
    """The usual ``--weights default|none|PATH`` option of a command that opens a model."""
    parser.add_argument("--weights", default="default", metavar="default|none|PATH", help=WEIGHTS_HELP)


def device_argument(parser, help: str = DEVICE_HELP) -> None:
    """The usual ``--device auto|cpu|cuda`` option."""
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help=help)
