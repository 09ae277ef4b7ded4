"""An atlas of a model: ``featvis site`` turns render folders into a static, linkable website.

OpenAI Microscope showed a page per unit of a few models; this builds that site for *your* render
folders (``featvis render``, ``featvis topk``, circuits), as plain HTML + CSS + a little JavaScript
that works from ``file://`` and from any static host (no server code, no external fonts, scripts
or CDNs)::

    SITE/index.html                    models -> layers: channels, how many rendered, settings, versions
    SITE/<model>/index.html            the model's layers in detail
    SITE/<model>/<layer>/index.html    a grid of every unit (lazy thumbnails), sort by channel or value, filter
    SITE/<model>/<layer>/<c>.html      one unit: its images, seeds, values, the reproducing command,
                                       dataset examples, upstream units (circuits), prev/next (arrow keys)
    SITE/<model>/<layer>/img/, thumb/  copied (or ``link``ed) images and generated thumbnails
    SITE/_static/site.css, site.js     the only stylesheet and script
    SITE/.featvis-site.json            what the last run wrote, from which sources (to update only changes)

The unit URLs (``<model>/<layer>/<channel>.html``) are stable: a re-run with more channels, more
layers or more folders keeps every old link working. Re-running rewrites only pages whose text
changed and copies or thumbnails only images whose source changed; files a previous run wrote that
are no longer part of the site are removed (nothing else in ``SITE`` is touched, nothing outside it
ever is).

>>> build(["renders/mixed4a", "renders/mixed4b"], "atlas")      # then open atlas/index.html
>>> serve("atlas", port=8000)                                   # http://127.0.0.1:8000/

The site never imports torch: it reads files.
"""
from __future__ import annotations

import sys

from ..errors import UsageError
from .builder import STATE, THUMB, Summary, build
from .collect import STATIC, Folder, collect, read_folder, slug
from .pages import reproduce_command
from .server import serve

__all__ = ["build", "serve", "read_folder", "collect", "reproduce_command", "slug", "Folder", "Summary", "THUMB",
           "STATE", "STATIC", "add_arguments", "run"]


# ==================================================================================================
# The command line: `featvis site DIR [DIR ...] --out SITE [--link] [--serve [--port N]]`
# ==================================================================================================

def add_arguments(parser) -> None:
    """Arguments of ``featvis site`` (an ``argparse`` (sub)parser)."""
    parser.add_argument("dirs", nargs="*", metavar="DIR", help="render folders (featvis render / topk / circuits)")
    parser.add_argument("--out", default="site", metavar="SITE", help="the site's folder (default: site)")
    parser.add_argument("--link", action="store_true",
                        help="symlink images instead of copying them (the site then needs the render folders in place)")
    parser.add_argument("--thumb", type=int, default=THUMB, metavar="PX",
                        help=f"longest side of grid thumbnails (default: {THUMB})")
    parser.add_argument("--serve", action="store_true", help="then serve SITE on 127.0.0.1 (without DIR: serve it as it is)")
    parser.add_argument("--port", type=int, default=8000, help="port for --serve (default: 8000; 0: any free port)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    """Run ``featvis site`` from parsed arguments (usage errors raise :class:`UsageError`)."""
    if not args.dirs and not args.serve:
        raise UsageError("featvis site needs render folders: featvis site DIR [DIR ...] --out SITE (or --serve to serve SITE)")
    if args.dirs:
        summary = build(args.dirs, args.out, link=args.link, thumb=args.thumb, progress=not args.quiet)
        print(summary)
    if args.serve:
        try:
            serve(args.out, args.port)
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
    return 0
