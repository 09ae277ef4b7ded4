"""Your own network on the featvis command line: every command that takes a model takes this file.

    featvis layers examples/my_model.py:build
    featvis render examples/my_model.py:build features.12 --weights my_checkpoint.pth --preset fourier-crops
    featvis topk examples/my_model.py:build features.12 --images photos/ --weights my_checkpoint.pth

featvis imports this file (that runs it, as ``python examples/my_model.py`` would) and calls
``build()``. ``--weights PATH`` then loads your checkpoint into the network ``build()`` returns
(strictly: every key and shape must match; read with ``torch.load(weights_only=True)``, so a
checkpoint never runs code); ``--weights none`` re-draws every parameter from ``--seed``;
``--weights default`` keeps what ``build()`` made (load your checkpoint inside it if you prefer).

Copy it, put your own architecture in, and say how it expects its input: featvis hands every
network an image in [0, 1] RGB, and does not guess what your network wants.
"""
import torchvision

import featvis


def build():
    """Any ``nn.Module``; layer names are its module paths (``featvis layers`` lists them)."""
    net = torchvision.models.mobilenet_v2(weights=None)  # your architecture
    # Its input convention: torchvision's ImageNet mean and std. A network that normalizes inside
    # (takes [0, 1] RGB) says normalize=None; another mean and std: normalize=((r, g, b), (r, g, b)).
    return featvis.wrap(net, normalize="imagenet")
