"""Figure 2: four different images that all excite one channel (the diversity objective).

Feature Visualization (Olah et al., Distill 2017), "Diversity": a batch of four images maximizing
mixed4a:97 while a Gram-matrix diversity term (Lucid's) pushes them apart, so they show different
facets of what the channel responds to. The term's weight is relative to the objective
(featvis.objectives.scaled): Lucid's fixed 100 suits InceptionV1's activation sizes only.

    python examples/diversity.py [--unit mixed4a:97] [--weight 0.5]
    python examples/diversity.py --model handcoded --steps 128
"""
import featvis
from featvis.objectives import channel, diversity, scaled

import _common as common


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--weight", type=float, default=0.5,
                   help="weight of the diversity term, relative to the objective (default: 0.5)")
    p.add_argument("--images", type=int, default=4, help="how many images (default: 4)")
    args = p.parse_args(argv)
    model = common.load(args)
    layer, n = common.parse_unit(common.default(args, "diverse"))
    objective = scaled(channel(layer, n), diversity(layer), args.weight, group=args.images, label="diversity")
    result = featvis.render(model, objective, param=common.image_param(args, args.images),
                            **common.render_kwargs(args))
    path = common.output(args, "diversity")
    featvis.figures.figure([list(result.images)], row_titles=[f"{layer}:{n}"],
                      col_titles=[f"image {i + 1}" for i in range(args.images)], dpi=args.dpi, out=path)
    return common.done(path)


if __name__ == "__main__":
    main()
