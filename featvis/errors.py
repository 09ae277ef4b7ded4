"""The error type for a mistake in what the user asked for (not a bug in featvis)."""


class UsageError(ValueError):
    """A bad input: a model, layer, channel, file or option that cannot work as given.

    The message is one line that names the input and the fix; the CLI prints it and exits with
    status 2 (argparse's convention for usage errors) without a traceback.
    """
