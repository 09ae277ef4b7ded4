"""``featvis site --serve``: the built site over HTTP on 127.0.0.1 (files only, standard library)."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Optional

from ..errors import UsageError


def serve(site, port: int = 8000, ready: Optional[Callable[[str, object], None]] = None) -> None:
    """Serve ``site`` at http://127.0.0.1:``port``/ until interrupted (``port`` 0: any free port).

    ``ready(url, server)`` is called once it listens (by default it prints the URL);
    ``server.shutdown()`` from another thread stops it.
    """
    import http.server
    site = Path(site)
    if not (site / "index.html").is_file():
        raise UsageError(f"{site} has no index.html; build it first: featvis site DIR [DIR ...] --out {site}")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # one line per request would drown the URL
            pass

    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Quiet, directory=str(site)))
    except OSError as e:
        raise UsageError(f"--port {port}: cannot listen there ({e.strerror}); pass another --port, or --port 0 for any free one") from e
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    (ready or (lambda u, s: print(f"serving {site} at {u} (Ctrl-C to stop)", flush=True)))(url, server)
    try:
        server.serve_forever()
    finally:
        server.server_close()
