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
        """Files of the site only: no folder listings (a folder without index.html is 404) and no
        hidden files (``.featvis-site.json``, a killed run's temporary files)."""

        def log_message(self, *args):  # one line per request would drown the URL
            pass

        def list_directory(self, path):
            self.send_error(404, "No listing")
            return None

        def send_head(self):
            from urllib.parse import unquote, urlsplit
            parts = unquote(urlsplit(self.path).path).split("/")
            if any(p.startswith(".") for p in parts if p):
                self.send_error(404, "Not found")
                return None
            return super().send_head()

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
