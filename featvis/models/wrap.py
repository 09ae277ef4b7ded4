"""Any ``nn.Module`` as a featvis model: the [0,1] image in, the module's own normalization inside."""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from .layout import Layout, as_layout

# torchvision's ImageNet statistics (the normalization its pretrained weights expect).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: ``wrap(net)`` without ``normalize=``: the convention ``net`` declares (its ``featvis_normalize``
#: attribute), else an error saying how to declare it. A guess is worse than an error: ImageNet's
#: mean and std applied to a net that normalizes inside (or expects [-1, 1]) changes what it sees,
#: and its top class, without a word.
DECLARED = "declared"
#: The attribute a net may carry to declare its input convention (any value ``normalize=`` takes).
DECLARE_ATTR = "featvis_normalize"

#: The layer name of a wrapped model's output (the whole net's forward), for ``class_logit``.
LOGITS = "logits"


class FeatvisModel(nn.Module):
    """A module that takes float images (B, C, H, W) in [0,1] and normalizes them for ``net``.

    ``in_channels``: the channels the net takes (3 for RGB, 1 for grayscale; the length of the
    normalization's mean when one is given); params render that many. ``layouts``: the layout of
    layers whose output is not (B, C, H, W) (``{"blocks.*": tokens(16), "stages.*.mlp.fc1":
    "channels_last"}``, exact names or globs); ``tokens``: the token layout of every 3-d output
    whose token count fits its grid (a ViT's blocks), see :mod:`featvis.models.layout`.

    Layer names are ``net``'s own module paths, without a prefix for the wrapper: a ResNet's third
    stage is ``layer3`` whether the ResNet is wrapped or not. Subclasses (the zoo's InceptionV1)
    may add aliases by overriding :meth:`named_layers`.

    BatchNorm statistics are frozen: BatchNorm layers stay in eval mode (normalizing with their
    stored statistics, never updating them) even after ``.train()``; featvis never trains a model.
    """

    #: How many first steps of :func:`featvis.render` redirect the ReLU gradients of the model's
    #: :class:`featvis.models.redirect.ReLU` modules (Lucid's trick; 0 = never).
    redirect_steps: int = 0

    def __init__(self, net: nn.Module, normalize: Optional[Tuple[Sequence[float], Sequence[float]]] = (IMAGENET_MEAN, IMAGENET_STD), name: Optional[str] = None,
                 in_channels: Optional[int] = None, layouts: Optional[Mapping[str, object]] = None, tokens=None):
        super().__init__()
        self.net = net
        self.name = name or display_name(net)
        if normalize is None:
            self.register_buffer("mean", None)
            self.register_buffer("std", None)
            self.in_channels = 3 if in_channels is None else _channels(in_channels)
        else:
            mean, std = normalize
            n = len(mean) if in_channels is None else _channels(in_channels)
            if len(mean) != n or len(std) != n:
                raise ValueError(f"normalize=(mean, std) needs one value per input channel ({n}), got {len(mean)} and "
                                 f"{len(std)}")
            self.in_channels = n
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, n, 1, 1))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, n, 1, 1))
        self.layouts: Dict[str, Layout] = {k: as_layout(v) for k, v in (layouts or {}).items()}
        self.tokens: Optional[Layout] = None if tokens is None else as_layout(tokens)

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
        if isinstance(images, torch.Tensor) and self.mean.device != images.device:  # (not when fx traces)
            # ``net`` was moved without its wrapper (``wrap(net)``, then ``net.cuda()``): the
            # statistics follow the images, once.
            self.mean, self.std = self.mean.to(images.device), self.std.to(images.device)
        return (images - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(images))


def _channels(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"in_channels={n!r}: expected a positive whole number (3 for RGB, 1 for grayscale)")
    return n


def _block_types() -> tuple:
    """torchvision's residual, ConvNeXt, inception and inverted-residual (MobileNetV2/V3,
    EfficientNet) block classes (none while torchvision is not imported: then no model holds one,
    and importing it would cost seconds)."""
    import sys
    if "torchvision" not in sys.modules:
        return ()
    from torchvision.models.convnext import CNBlock
    from torchvision.models.efficientnet import FusedMBConv, MBConv
    from torchvision.models.googlenet import Inception
    from torchvision.models.mobilenetv2 import InvertedResidual as MobileNetV2Block
    from torchvision.models.mobilenetv3 import InvertedResidual as MobileNetV3Block
    from torchvision.models.resnet import BasicBlock, Bottleneck
    return (BasicBlock, Bottleneck, CNBlock, Inception, MobileNetV2Block, MobileNetV3Block, MBConv, FusedMBConv)


def display_name(module: nn.Module) -> str:
    """A net's name for messages: its class, or, for a thin wrapper whose only child holds every
    parameter (``_Scaled(net)`` that rescales the input), the class of the net inside."""
    seen = module
    containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
    for _ in range(4):
        children = list(seen.children())
        if len(children) != 1 or any(True for _ in seen.parameters(recurse=False)) \
                or isinstance(children[0], containers):  # a net whose body is one Sequential is the net
            break
        seen = children[0]
    if seen is module:
        return type(module).__name__
    return f"{type(seen).__name__} (in {type(module).__name__})"


def _declared_normalize(module: nn.Module, name: str):
    """What ``module`` says about its input, or a :class:`~featvis.errors.UsageError` saying how to say it."""
    if hasattr(module, DECLARE_ATTR):
        return getattr(module, DECLARE_ATTR)
    from ..errors import UsageError
    raise UsageError(
        f"featvis cannot tell how {name} expects its input, and will not guess: declare it with "
        f"featvis.wrap(net, normalize=None) if it takes [0, 1] RGB (it normalizes inside, like the nets of "
        f"../shared/models), normalize=\"imagenet\" for torchvision's ImageNet mean and std, or "
        f"normalize=((r, g, b), (r, g, b)) for another mean and std (or set net.{DECLARE_ATTR} to one of these)")


def _normalize_arg(normalize):
    """``"imagenet"`` -> torchvision's (mean, std); anything else as given."""
    if isinstance(normalize, str):
        if normalize.lower() == "imagenet":
            return (IMAGENET_MEAN, IMAGENET_STD)
        from ..errors import UsageError
        raise UsageError(f"normalize={normalize!r}: use None ([0, 1] RGB in), \"imagenet\", or (mean, std) with "
                         "one value per input channel each")
    return normalize


def wrap(module: nn.Module, normalize=DECLARED, name: Optional[str] = None,
         in_channels: Optional[int] = None, layouts: Optional[Mapping[str, object]] = None, tokens=None) -> FeatvisModel:
    """Make ``module`` a featvis model: [0,1] images in, ``(x - mean) / std`` fed to ``module``.

    ``normalize``: ``None`` passes the [0,1] image through unchanged (a net that normalizes inside);
    ``"imagenet"`` is torchvision's ImageNet mean and std; ``(mean, std)`` any other, one value per
    input channel each. Left out, the net must declare it (``net.featvis_normalize = None`` etc.): featvis does not
    guess, since a wrong guess changes what the net sees without a word. Layer names stay
    ``module``'s own (``wrap(resnet).named_layers()`` has ``layer3.1``, not ``net.layer3.1``). The input
    has as many channels as ``mean`` has values (``in_channels`` for ``normalize=None``; default 3):
    a grayscale net takes ``normalize=((0.5,), (0.5,))`` and is rendered grayscale. ``layouts``
    and ``tokens`` declare layers that are not (B, C, H, W) (see :class:`FeatvisModel`).

    >>> model = featvis.wrap(my_net, normalize=((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)))
    >>> vit = featvis.wrap(my_vit, tokens=featvis.models.tokens(16, prefix=["cls"]))
    """
    if isinstance(module, FeatvisModel):
        return module
    if not isinstance(module, nn.Module):
        raise TypeError(f"featvis.wrap needs an nn.Module, got {type(module).__name__}")
    if isinstance(normalize, str) and normalize == DECLARED:
        normalize = _declared_normalize(module, name or display_name(module))
    wrapped = FeatvisModel(module, _normalize_arg(normalize), name=name or display_name(module),
                           in_channels=in_channels, layouts=layouts, tokens=tokens)
    wrapped.training = module.training  # the wrapper follows the net; the net's own flags are untouched
    device = module_device(module)
    # A wrapper made around a module that is already on a GPU lives there too (render() moves a
    # raw module, and a later evaluate() wraps it again: its statistics must not stay on the CPU).
    return wrapped if device is None else wrapped.to(device)


def module_device(module: nn.Module) -> Optional[torch.device]:
    """The device of ``module``'s first parameter or buffer; ``None`` if it has neither."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return None


def as_model(model: nn.Module) -> FeatvisModel:
    """``model`` itself if it is a featvis model, else :func:`wrap` ``(model)``: its declared input
    convention, or an error saying how to declare it."""
    if isinstance(model, FeatvisModel):
        return model
    return wrap(model)
