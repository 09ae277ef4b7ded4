"""Figure 1: one unit four ways: a neuron, its channel, a direction, and the channel paired with another.

Feature Visualization (Olah et al., Distill 2017), "Neuron vs channel" and "Combining objectives":
the neuron at the centre of mixed4a:476, the whole channel, a direction in mixed4a's activation
space that leans on 476 (476 plus a random direction, at 45 degrees to it), and 476 + 465 jointly.
All four are rendered as one batch.

    python examples/objectives.py                          # pretrained InceptionV1
    python examples/objectives.py --weights inception5h.pth  # offline, from a local state dict
    python examples/objectives.py --model handcoded --steps 128
"""
import torch

import featvis
from featvis.objectives import channel, direction, neuron

import _common as common


def main(argv=None):
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    model = common.load(args)
    layer, n = common.parse_unit(common.default(args, "unit"))
    layer2, n2 = common.parse_unit(common.default(args, "partner"))
    C = common.n_channels(model, layer, common.size(args))
    # unit vector along channel n plus a random unit vector (seeded): 45 degrees from the channel
    rand = torch.randn(C, generator=torch.Generator().manual_seed(args.seed))
    vector = torch.nn.functional.one_hot(torch.tensor(n), C).float() + rand / rand.norm()
    objective = (neuron(layer, n, batch=0) + channel(layer, n, batch=1) + direction(layer, vector, batch=2)
                 + channel(layer, n, batch=3) + channel(layer2, n2, batch=3))
    result = featvis.render(model, objective, param=common.image_param(args, 4),
                            **common.render_kwargs(args))
    titles = ["neuron", "channel", "direction", f"pair with {n2}" if layer2 == layer else f"+ {layer2}:{n2}"]
    path = common.output(args, "objectives")
    featvis.figures.figure([list(result.images)], row_titles=[f"{layer}:{n}"], col_titles=titles,
                      captions=[[f"{v:.3g}" for v in result.values.tolist()]], dpi=args.dpi, out=path)
    return common.done(path)


if __name__ == "__main__":
    main()
