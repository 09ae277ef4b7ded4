"""Figure 3: interpolating between two channels across a batch.

Feature Visualization (Olah et al., Distill 2017), "Interpolation": image i of B maximizes
(1 - w) * mixed4a:476 + w * mixed4a:460 with w = i / (B - 1). With featvis's
``channel_interpolate`` and ``alignment`` objectives (and a Fourier param whose images share
low-resolution structure) the frames also line up; without them, the same weighted sum is built
from per-image channel objectives.

    python examples/interpolation.py [--unit mixed4a:476 --partner mixed4a:460] [--frames 5]
    python examples/interpolation.py --model handcoded --steps 128
"""
import inspect

import featvis
from featvis import objectives

import _common as common


def interpolation_objective(unit1, unit2, frames: int, alignment_weight: float):
    """channel_interpolate (+ alignment) when featvis has them, else the same weighted sum by hand."""
    (l1, n1), (l2, n2) = unit1, unit2
    if hasattr(objectives, "channel_interpolate"):
        obj = objectives.channel_interpolate(l1, n1, l2, n2)
        if alignment_weight and hasattr(objectives, "alignment"):
            obj = obj + alignment_weight * objectives.alignment(l1)
        return obj
    weights = [i / (frames - 1) for i in range(frames)]
    return sum((1 - w) * objectives.channel(l1, n1, batch=i) + w * objectives.channel(l2, n2, batch=i)
               for i, w in enumerate(weights))


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=5, help="images from the first unit to the second (default: 5)")
    p.add_argument("--alignment", type=float, default=0.1, help="weight of the alignment term (default: 0.1)")
    args = p.parse_args(argv)
    if args.frames < 2:
        raise SystemExit("--frames must be at least 2")
    model = common.load(args)
    u1, u2 = (common.parse_unit(u) for u in common.default(args, "interpolate"))
    objective = interpolation_objective(u1, u2, args.frames, args.alignment)
    shared = {"shared": True} if "shared" in inspect.signature(featvis.param.fourier).parameters else {}
    param = featvis.param.fourier(common.size(args), batch=args.frames, **shared)
    result = featvis.render(model, objective, param=param, **common.render_kwargs(args))
    weights = [i / (args.frames - 1) for i in range(args.frames)]
    path = common.output(args, "interpolation")
    featvis.figures.figure([list(result.images)], row_titles=[f"{u1[0]}:{u1[1]}\nto {u2[0]}:{u2[1]}"],
                      col_titles=[f"{1 - w:.2g} : {w:.2g}" for w in weights], dpi=args.dpi, out=path)
    return common.done(path)


if __name__ == "__main__":
    main()
