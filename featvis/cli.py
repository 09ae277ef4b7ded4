"""The ``featvis`` command: ``models``, ``layers``, ``render``, ``sheet``.

A subcommand is one function ``cmd_NAME(sub)`` that adds its parser to ``sub`` (with
:func:`_add`) and sets ``run=`` to a function ``args -> exit status``, plus one line in
:data:`COMMANDS`. Exit status: 0 done, 2 a usage error (one line on stderr: the problem and the
fix; nothing written), 130 interrupted (what was complete is written), 1 anything else.

``FEATVIS_PLUGINS=pkg.mod[,other.mod]`` imports those modules at the start of every command
(before its arguments are parsed, ``featvis models`` included), so that models they register
(``featvis.models.register``) can be used by name. They are imported from installed packages and
``PYTHONPATH`` only (``python -m featvis`` takes the current folder off ``sys.path``), and run with
your rights, like any import. ``MODEL`` may also be ``path/to/file.py:function``
(:mod:`featvis.models.open`): that file is imported only by the command that names it.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import traceback
from typing import Callable, List, Optional

from .errors import UsageError, count_arg, device_argument, weights_argument

PROG = "featvis"


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line (and status 2) like every other usage error.

    A subcommand whose arguments live in a heavy module (topk, figure, selfcheck) adds them through
    ``fill``, called only when that subcommand is parsed or its help shown, so that ``featvis
    --help`` and ``featvis models`` import none of them (nor torch).
    """

    fill: Optional[Callable[["_Parser"], None]] = None

    def error(self, message):
        raise UsageError(f"{message} (see: {self.prog} --help)")

    def _filled(self):
        fill, self.fill = self.fill, None
        if fill is not None:
            fill(self)

    def parse_known_args(self, args=None, namespace=None):
        self._filled()
        return super().parse_known_args(args, namespace)

    def format_help(self):
        self._filled()
        return super().format_help()


def _lazy(module: str, attr: str) -> Callable:
    """``featvis.<module>.<attr>``, imported when called."""
    def call(*args, **kwargs):
        return getattr(importlib.import_module(f"featvis.{module}"), attr)(*args, **kwargs)
    call.__name__ = attr
    return call


#: The subcommands that compute with torch, and so take ``--threads``.
COMPUTING = ("render", "topk", "figure", "circuit", "selfcheck", "plan", "spectrum", "faithfulness")

THREADS_HELP = ("CPU threads for torch (default: $FEATVIS_THREADS, else the idle physical cores: fewer on a busy "
                "machine; render resumes with the folder's count). On a shared node or a busy laptop: 1")


def _add(sub, name: str, run: Callable[[argparse.Namespace], int], help: str, description: str = None):
    """A subcommand parser with the options every subcommand has (``--debug``; ``--threads`` for
    those in :data:`COMPUTING`)."""
    p = sub.add_parser(name, help=help, description=description or help,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    if name in COMPUTING:
        from .threads import arg
        p.add_argument("--threads", type=arg, default=None, metavar="N|auto", help=THREADS_HELP)
    p.set_defaults(run=run, command=name)
    return p


# --- featvis models ----------------------------------------------------------------------------

def cmd_models(sub):
    _add(sub, "models", _lazy("models.registry", "models_command"), "list the model zoo with one-line descriptions")


# --- featvis layers ----------------------------------------------------------------------------

def cmd_layers(sub):
    p = _add(sub, "layers", _lazy("models.listing", "layers_command"), "list a model's hookable layers: name, type, channels, output shape")
    p.add_argument("model", help="a model name (see: featvis models)")
    p.add_argument("--weights", default="none", metavar="W",
                   help="default | none | PATH (default: none; the shapes do not depend on the weights)")
    p.add_argument("--size", type=int, default=224, help="input image size for the shapes (default: 224)")


# --- featvis render ----------------------------------------------------------------------------

RENDER_EPILOG = """\
output (--out DIR):
  DIR/<layer>/<channel>.png    one image per channel (<channel>_<k>.png with --diversity K)
  DIR/<layer>/<channel>_neg.png  with --negative: its minimizing image (<channel>_neg_<k>.png)
  DIR/manifest.json            model, weights digest, settings, versions, device, runs, and per
                               image: seed, final objective value, file, sha256, seconds
  DIR/<layer>_sheet.png        labelled contact sheet of every image rendered so far

Re-running the same command resumes: images already in the manifest are skipped. Each image's
seed comes from --seed, the layer, the channel and k, so an image does not depend on --batch (up to
float rounding) nor on interruptions or shards (not at all: a resumed run's files equal an uninterrupted one's;
on the CPU for one thread count, which the folder records and a resume keeps: see --threads). --batch auto: on CUDA as many channels as ~80% of free GPU memory holds (at most
256 images per batch); on the CPU 8.

example:
  featvis render inceptionv1 mixed4a --channels 0:8 --steps 512 --out renders
"""


def cmd_render(sub):
    p = _add(sub, "render", _render, "render the channels of one or more layers (or --layers blocks|all) into a folder: resumable, shardable")
    p.epilog = RENDER_EPILOG
    p.add_argument("model", help="a model name (see: featvis models)")
    p.add_argument("layer", nargs="*", help="one or more layer names (see: featvis layers MODEL), or --layers")
    p.add_argument("--channels", default="all", metavar="SPEC",
                   help="all (default), a range 0:64, a list 3,17,476, or a mix 0:8,476")
    p.add_argument("--neurons", action="store_true", help="optimize each channel's centre neuron instead of the whole channel")
    p.add_argument("--size", type=int, default=None, help="image size in pixels (default: 128, or the preset's)")
    p.add_argument("--steps", type=int, default=512, help="optimization steps (default: 512)")
    p.add_argument("--lr", type=float, default=None,
                   help="Adam learning rate (default: the preset's, else the param's own: 0.005 for cppn, else 0.05)")
    p.add_argument("--batch", type=count_arg("channels", auto=True), default=32, metavar="N|auto",
                   help="channels per batched optimization (default: 32; auto: from free memory)")
    p.add_argument("--param", choices=["fourier", "pixel", "cppn"], default=None, help="image parameterization (default: fourier)")
    from .presets import PRESETS
    p.add_argument("--preset", choices=list(PRESETS) + ["auto", "none"], default=None,
                   help="a whole recipe: param, size, transforms and learning-rate schedule (default: auto, the best "
                        "measured channel recipe for the model, recorded as the preset it chose: lucid on inceptionv1, "
                        "fourier-crops elsewhere; with --param: none; none: a Fourier or --param image, the standard "
                        "transforms, constant Adam, 128 px)")
    p.add_argument("--diversity", type=int, default=1, metavar="K",
                   help="K diverse images per channel (default: 1)")
    p.add_argument("--diversity-weight", type=float, default=None, metavar="W",
                   help="with --diversity K: maximize objective + W * |objective| * diversity, i.e. W is the "
                        "share of the objective that looking alike can cost (default: 0.5)")
    p.add_argument("--seed", type=int, default=0, help="run seed; each image's seed derives from it, the layer, the channel and k (default: 0)")
    device_argument(p)
    p.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=True,
                   help="deterministic kernels only, so that a seed (and a resumed run) gives the same bytes on a GPU too (default: on)")
    p.add_argument("--graph", action=argparse.BooleanOptionalAction, default=False,
                   help="CUDA only: capture each optimization step in a CUDA graph and replay it (default: off)")
    weights_argument(p)
    p.add_argument("--out", default="renders", metavar="DIR", help="output folder (default: renders)")
    p.add_argument("--format", choices=["png"], default="png", help="image format (default: png)")
    p.add_argument("--force", action="store_true", help="start over in DIR, even if it holds renders with other settings")
    from .jobs import job
    job.add_render_arguments(p)


def _render(args) -> int:
    argv = sys.argv[1:] if args.argv is None else args.argv
    if args.slurm is not None:
        from .jobs.launch import submit_array
        return submit_array(args, list(argv))
    from .jobs.job import render_command
    return render_command(args, argv=argv)


# --- featvis sheet -----------------------------------------------------------------------------

def cmd_sheet(sub):
    p = _add(sub, "sheet", _lazy("jobs.sheets", "sheet_command"), "rebuild a contact sheet (PNG or PDF) from a render folder")
    p.add_argument("dir", metavar="DIR", help="a folder written by featvis render")
    p.add_argument("--layer", help="the layer (default: every layer in DIR)")
    p.add_argument("--cols", type=int, help="columns (default: near-square, or K with --diversity K)")
    p.add_argument("--labels", action=argparse.BooleanOptionalAction, default=True, help="label each image with its channel")
    p.add_argument("--title", action=argparse.BooleanOptionalAction, default=True,
                   help="the model, layer and settings above the grid (default: on)")
    p.add_argument("--cell", type=int, metavar="PX",
                   help="cell size in pixels: enlarge (or shrink) every image to it (default: the render size, "
                        "at least 128)")
    p.add_argument("--out", metavar="FILE", help="FILE.png, or FILE.pdf / FILE.svg drawn with matplotlib, text as text (default: DIR/<layer>_sheet.png)")
    p.add_argument("--with-examples", action="store_true",
                   help="each visualization beside its top-k dataset crops (run featvis topk first); "
                        "default FILE: DIR/<layer>_examples.png")


# --- featvis topk / figure / ...: the arguments and the work live in their modules ---------------

def _delegated(name: str, module: str, help: str, run: str = "run", fill: str = "add_arguments") -> Callable:
    """The adder of subcommand ``name``, whose arguments (``featvis.<module>.<fill>``) and work
    (``.<run>``) are imported only when that subcommand is parsed or run."""
    def add(sub):
        p = _add(sub, name, _lazy(module, run), help)
        p.fill = _lazy(module, fill)
    add.__name__ = f"cmd_{name}"
    return add


cmd_topk = _delegated("topk", "analysis.topk", "record each channel's top-k dataset images and crops into a render folder")
cmd_figure = _delegated("figure", "figures.spec", "render a figure declared in a JSON spec, in one batch")
cmd_selfcheck = _delegated("selfcheck", "analysis.selfcheck", "render every unit of the hand-coded model and check orientation "
                           "and curvature", run="run_args")
cmd_merge = _delegated("merge", "jobs.job", "merge the shards' records of a render folder; list missing units",
                       run="merge_command", fill="add_merge_arguments")
cmd_plan = _delegated("plan", "jobs.plan", "units, batches, estimated GPU/CPU-hours and shards for a whole-model job")
cmd_circuit = _delegated("circuit", "analysis.circuit_figure", "a unit, its strongest inputs from an earlier layer and the "
                         "expanded weights between (figure, record)")
cmd_spectrum = _delegated("spectrum", "analysis.spectrum", "mean amplitude spectrum of a folder of natural images, for param.maco")
cmd_site = _delegated("site", "site", "build a static website of render folders: a page per model, layer and unit")
cmd_faithfulness = _delegated("faithfulness", "analysis.faithful", "score each render of a folder against its own and the other "
                              "channels' top-k dataset examples")

cmd_atlas = _delegated("atlas", "analysis.atlas", "an activation atlas of a layer: photos' activations laid out by UMAP, "
                       "a grid of cells each rendered from its mean direction")
cmd_blocks = _delegated("blocks", "analysis.blocks", "building blocks of one photo at a layer: NMF neuron groups, their "
                        "renders, spatial maps and attribution to the top classes")
cmd_score = _delegated("score", "analysis.score", "the machine interpretability score of every rendered unit: can an "
                       "observer tell its strong from its weak photos by its renders? (and by its natural photos)")


#: The subcommands, in the order ``featvis --help`` lists them.
COMMANDS: List[Callable] = [cmd_models, cmd_layers, cmd_render, cmd_sheet, cmd_topk, cmd_figure, cmd_circuit,
                            cmd_selfcheck, cmd_merge, cmd_plan, cmd_spectrum, cmd_faithfulness, cmd_score, cmd_atlas,
                            cmd_blocks, cmd_site]


def parser() -> argparse.ArgumentParser:
    """The ``featvis`` argument parser with every subcommand of :data:`COMMANDS`."""
    from . import __version__
    p = _Parser(prog=PROG, description="Feature visualization for convolutional image models.")
    p.add_argument("--version", action="version", version=f"featvis {__version__}")
    sub = p.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
    for add in COMMANDS:
        add(sub)
    return p


def _load_plugins():
    from .models.open import load_plugins  # (imports no torch)
    load_plugins()


def _sigterm(signum, frame):
    raise KeyboardInterrupt  # a batch scheduler's polite kill: stop like Ctrl-C


def main(argv: Optional[List[str]] = None) -> int:
    """Run the ``featvis`` command line; returns the exit status."""
    args = argparse.Namespace(debug=False, command=None)
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    prev = signal.signal(signal.SIGTERM, _sigterm) if _main_thread() else None
    try:
        from .threads import passive_wait
        passive_wait()  # before anything imports torch (a plugin may)
        _load_plugins()
        args = parser().parse_args(argv)
        if not hasattr(args, "run"):
            parser().print_help(sys.stderr)
            return 2
        args.argv = argv
        if args.command in COMPUTING and args.command != "render":  # render: the job decides (a folder's count)
            from .threads import apply, choose
            apply(choose(args.threads)[0])
        return args.run(args)
    except UsageError as e:
        if debug:
            traceback.print_exc()
        where = f"{PROG} {args.command}" if args.command else PROG
        print(f"{where}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # featvis layers x | head
        sys.stderr.close()
        return 0
    except Exception as e:
        if debug:
            raise
        where = f"{PROG} {args.command}" if args.command else PROG
        print(f"{where}: error: {type(e).__name__}: {e} (run with --debug for the traceback)", file=sys.stderr)
        return 1
    finally:
        if prev is not None:
            signal.signal(signal.SIGTERM, prev)


def _main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
