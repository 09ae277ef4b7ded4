"""Figure 7: a curve detector and the units it is built from (the Circuits thread's curve circuit).

The expanded weights from an earlier layer to one unit (featvis.circuits) rank that layer's
channels by how strongly they feed it; the figure shows the unit's visualization, its top inputs'
visualizations (rendered in one batch) and, under each, the weight heatmap on one red/blue scale
(Cammarata et al., "Curve Circuits", Distill 2021). Defaults: InceptionV1's curve detector
mixed3b:379 from mixed3a (other curve units of mixed3b: 385, 343, 342, 388, 340, 330, 349).
Offline, the hand-coded model's U-shaped curve unit curves:2 from its line detectors (edges):
there the answer is known, tangent lines excite and orthogonal ones inhibit.

    python examples/circuit.py [--unit mixed3b:342] [--from mixed3a] [--top 8]
    python examples/circuit.py --model handcoded --steps 256
"""
import _common as common

import featvis
from featvis.analysis.circuit_figure import circuit_figure
from featvis.analysis.circuits import top_inputs

#: The upstream layer per model (the unit itself comes from --unit or the defaults below).
SOURCES = {"inceptionv1": "mixed3a", "handcoded": "edges"}
UNITS = {"inceptionv1": "mixed3b:379", "handcoded": "curves:2"}


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--from", dest="src", default=None, help="upstream layer (default: mixed3a; edges for handcoded)")
    p.add_argument("--top", type=int, default=8, help="how many inputs to show (default: 8)")
    args = p.parse_args(argv)
    unit = args.unit or UNITS.get(args.model)
    src = args.src or SOURCES.get(args.model)
    if unit is None or src is None:
        raise SystemExit(f"no default circuit for model {args.model!r}; give --unit LAYER:CHANNEL and --from LAYER")
    common.parse_unit(unit)
    model = common.load(args)
    inputs = top_inputs(model, unit, src, k=args.top, device=args.device)
    for inp in inputs:
        print(f"  {src}:{inp.channel:<4d} {inp.sign:<11s} norm {inp.norm:.4f}")
    path = common.output(args, f"circuit_{unit.replace(':', '_')}")
    circuit_figure(model, unit, src, size=common.size(args), inputs=inputs, out=path, dpi=args.dpi,
                   **common.render_kwargs(args))
    return common.done(path)


if __name__ == "__main__":
    main()
