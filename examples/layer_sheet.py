"""Figure 5: every channel of a layer as a contact sheet.

The overview Microscope and the Distill appendices give for a layer: one visualization per
channel, rendered in batches (image i maximizes channel i of the batch), labelled with its index.
InceptionV1's mixed3a has 256 channels, so on a CPU start with ``--channels 0:32``.

    python examples/layer_sheet.py [--layer mixed3a] [--channels 0:64] [--batch 64]
    python examples/layer_sheet.py --model handcoded --steps 128      # the 12 edge detectors
"""
import math

import featvis
from featvis.objectives import channel
from featvis.units import parse_channels

import _common as common


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--layer", default=None, help="layer to show (default: mixed3a; edges for handcoded)")
    p.add_argument("--channels", default="all", help="channels: all (default), 0:32, 3,17 or 0:8,476")
    p.add_argument("--batch", type=int, default=64, help="channels rendered at once (default: 64)")
    p.add_argument("--cols", type=int, default=None, help="columns of the sheet (default: about square)")
    args = p.parse_args(argv)
    model = common.load(args)
    layer = args.layer or common.default(args, "sheet_layer")
    size = common.size(args)
    chans = parse_channels(args.channels, common.n_channels(model, layer, size))
    images = []
    for start in range(0, len(chans), args.batch):
        group = chans[start:start + args.batch]
        result = featvis.render(model, channel(layer, group), param=common.image_param(args, len(group)),
                                **common.render_kwargs(args))
        images.extend(result.images)
    cols = args.cols or math.ceil(math.sqrt(len(images)))
    rows = [images[i:i + cols] for i in range(0, len(images), cols)]
    labels = [[str(c) for c in chans[i:i + cols]] for i in range(0, len(chans), cols)]
    path = common.output(args, f"layer_sheet_{layer}")
    featvis.figures.figure(rows, captions=labels, col_titles=None, row_titles=None, pad=4, dpi=args.dpi, out=path)
    return common.done(path)


if __name__ == "__main__":
    main()
