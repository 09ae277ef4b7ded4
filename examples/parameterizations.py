"""Figure 4: the same unit optimized in three parameterizations: pixels, Fourier, CPPN.

Differentiable Image Parameterizations (Mordvintsev et al., Distill 2018): plain pixels give
high-frequency noise; a decorrelated, 1/f-scaled Fourier basis gives the familiar
visualizations; a CPPN (a small network from (x, y) to colour) gives smooth, resolution-free
patterns. Each optimizes mixed4a:476 with the same transforms and steps (the CPPN at its own
learning rate, Lucid's 0.005).

    python examples/parameterizations.py
    python examples/parameterizations.py --model handcoded --steps 128
"""
import sys

import featvis
from featvis.objectives import channel

import _common as common


def params(size: int):
    """(title, param or None, learning rate) for each column; None where featvis lacks the param."""
    cppn = getattr(featvis.param, "cppn", None)
    return [
        ("pixel", featvis.param.pixel(size), 0.05),
        ("Fourier", featvis.param.fourier(size), 0.05),
        ("CPPN", cppn(size) if cppn else None, 0.005),  # Lucid's Adam rate for CPPNs
    ]


def main(argv=None):
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    model = common.load(args)
    layer, n = common.parse_unit(common.default(args, "unit"))
    columns = params(common.size(args))
    images, captions = [], []
    for title, param, lr in columns:
        if param is None:
            print(f"featvis.param.{title.lower()} is not available in this featvis; its column is left blank",
                  file=sys.stderr)
            images.append(None)
            captions.append("unavailable")
            continue
        result = featvis.render(model, channel(layer, n), param=param, lr=lr, **common.render_kwargs(args))
        images.append(result.images[0])
        captions.append(f"{result.values[0]:.3g}")
    path = common.output(args, "parameterizations")
    featvis.figures.figure([images], row_titles=[f"{layer}:{n}"], col_titles=[t for t, _, _ in columns],
                      captions=[captions], cell=common.size(args), dpi=args.dpi, out=path)
    return common.done(path)


if __name__ == "__main__":
    main()
