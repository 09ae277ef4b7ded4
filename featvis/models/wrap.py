"""Any ``nn.Module`` as a featvis model: the [0,1] image in, the module's own normalization inside."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

# torchvision's ImageNet statistics (the normalization its pretrained weights expect).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The layer name of a wrapped model's output (the whole net's forward), for ``class_logit``.
LOGITS = "logits"


class FeatvisModel(nn.Module):
    """A module that takes float images (B,3,H,W) in [0,1] and normalizes them for ``net``.

    Layer names are ``net``'s own module paths, without a prefix for the wrapper: a ResNet's third
    stage is ``layer3`` whether the ResNet is wrapped or not. Subclasses (the zoo's InceptionV1)
    may add aliases by overriding :meth:`named_layers`.

    BatchNorm statistics are frozen: BatchNorm layers stay in eval mode (normalizing with their
    stored statistics, never updating them) even after ``.train()``; featvis never trains a model.
    """

    #: How many first steps of :func:`featvis.render` redirect the ReLU gradients of the model's
    #: :class:`featvis.models.redirect.ReLU` modules (Lucid's trick; 0 = never).
    redirect_steps: int = 0

    def __init__(self, net: nn.Module, normalize: Optional[Tuple[Sequence[float], Sequence[float]]] = (IMAGENET_MEAN, IMAGENET_STD), name: Optional[str] = None):
        super().__init__()
        self.net = net
        self.name = name or type(net).__name__
        if normalize is None:
            self.register_buffer("mean", None)
            self.register_buffer("std", None)
        else:
            mean, std = normalize
            if len(mean) != 3 or len(std) != 3:
                raise ValueError(f"normalize=(mean, std) needs three values each (R, G, B), got {len(mean)} and {len(std)}")
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def named_layers(self) -> Dict[str, nn.Module]:
        """Hookable modules by name (``net``'s module paths), plus ``"logits"``: ``net``'s output."""
        table = {name: m for name, m in self.net.named_modules() if name}
        table.setdefault(LOGITS, self.net)  # a module of net's own called "logits" wins
        return table

    def block_layers(self) -> List[str]:
        """Names of the layers that are whole blocks (residual, ConvNeXt or inception blocks): the
        outputs usually visualized. Recognizes torchvision's block classes; subclasses may override."""
        types = _block_types()
        return [name for name, m in self.named_layers().items() if isinstance(m, types)]

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        if self.mean is None:
            return images
        return (images - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(images))


def _block_types() -> tuple:
    """torchvision's residual, ConvNeXt and inception block classes."""
    from torchvision.models.convnext import CNBlock
    from torchvision.models.googlenet import Inception
    from torchvision.models.resnet import BasicBlock, Bottleneck
    return (BasicBlock, Bottleneck, CNBlock, Inception)


def wrap(module: nn.Module, normalize=(IMAGENET_MEAN, IMAGENET_STD), name: Optional[str] = None) -> FeatvisModel:
    """Make ``module`` a featvis model: [0,1] images in, ``(x - mean) / std`` fed to ``module``.

    ``normalize=None`` passes the [0,1] image through unchanged. Layer names stay ``module``'s own
    (``wrap(resnet).named_layers()`` has ``layer3.1``, not ``net.layer3.1``).

    >>> model = featvis.wrap(my_net, normalize=((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)))
    """
    if isinstance(module, FeatvisModel):
        return module
    if not isinstance(module, nn.Module):
        raise TypeError(f"featvis.wrap needs an nn.Module, got {type(module).__name__}")
    model = FeatvisModel(module, normalize, name=name)
    model.training = module.training  # the wrapper follows the net; the net's own flags are untouched
    return model


def as_model(model: nn.Module) -> FeatvisModel:
    """``model`` itself if it is a featvis model, else ``model`` wrapped with ImageNet normalization."""
    if isinstance(model, FeatvisModel):
        return model
    return wrap(model)
