"""Figure 6: a visualization beside the dataset images that excite the channel most.

Like OpenAI Microscope: for each channel, the optimized image, then the top-k images of a folder
cropped to the unit's receptive field around its strongest activation (Borowski et al. 2021 found
such natural examples help people more than visualizations alone). Without ``--images``, a small
folder of synthetic lines, arcs, gratings and blobs is generated into examples/out/.

    python examples/dataset_examples.py --images ~/imagenet/val --k 6
    python examples/dataset_examples.py --model handcoded --steps 128   # curve detectors vs arcs
"""
import _common as common

import featvis
from featvis.analysis import topk
from featvis.objectives import channel


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--images", default=None, help="folder of .jpg/.png images (default: a generated synthetic set)")
    p.add_argument("--channels", default=None, help="LAYER:C1,C2,... (default: mixed4a:476,460,465; curves:0,2,4,6)")
    p.add_argument("--k", type=int, default=6, help="dataset examples per channel (default: 6)")
    p.add_argument("--crop", type=int, default=None, help="crop size in px (default: the unit's receptive field)")
    p.add_argument("--image-size", type=int, default=None,
                   help="dataset images are resized to this (default: 224; 160 for handcoded)")
    args = p.parse_args(argv)
    model = common.load(args)
    layer, chans = common.unit_list(args.channels or common.default(args, "examples"))
    size = common.size(args)
    image_size = args.image_size or (160 if args.model == "handcoded" else 224)
    folder = args.images or common.synthetic_images(args.out / "synthetic_images", size=image_size)

    render_dir = args.out / "dataset_examples"
    result = featvis.render(model, channel(layer, chans), param=common.image_param(args, len(chans)),
                            **common.render_kwargs(args))
    for c, image in zip(chans, result.images):  # the render directory layout: <dir>/<layer>/<channel>.png
        featvis.io.save_image(image, render_dir / layer / f"{c}.png")
    found = topk.topk(model, layer, folder, channels=chans, k=args.k, size=image_size, device=args.device,
                      progress=not args.quiet, crop=args.crop)
    topk.write_topk(found, render_dir, model_name=args.model)
    path = common.output(args, "dataset_examples")
    topk.examples_sheet(render_dir, layer, channels=chans, cell=size, dpi=args.dpi, out=path)
    return common.done(path)


if __name__ == "__main__":
    main()
