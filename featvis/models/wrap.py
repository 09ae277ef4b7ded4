"""Any ``nn.Module`` as a featvis model: the [0,1] image in, the module's own normalization inside."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

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
        self.name = name or display_name(net)
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
        if isinstance(images, torch.Tensor) and self.mean.device != images.device:  # (not when fx traces)
            # ``net`` was moved without its wrapper (``wrap(net)``, then ``net.cuda()``): the
            # statistics follow the images, once.
            self.mean, self.std = self.mean.to(images.device), self.std.to(images.device)
        return (images - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(images))


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
                         "three values each")
    return normalize


def wrap(module: nn.Module, normalize=DECLARED, name: Optional[str] = None) -> FeatvisModel:
    """Make ``module`` a featvis model: [0,1] images in, ``(x - mean) / std`` fed to ``module``.

    ``normalize``: ``None`` passes the [0,1] image through unchanged (a net that normalizes inside);
    ``"imagenet"`` is torchvision's ImageNet mean and std; ``(mean, std)`` any other, three values
    each. Left out, the net must declare it (``net.featvis_normalize = None`` etc.): featvis does not
    guess, since a wrong guess changes what the net sees without a word. Layer names stay
    ``module``'s own (``wrap(resnet).named_layers()`` has ``layer3.1``, not ``net.layer3.1``).

    >>> model = featvis.wrap(my_net, normalize=((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)))
    """
    if isinstance(module, FeatvisModel):
        return module
    if not isinstance(module, nn.Module):
        raise TypeError(f"featvis.wrap needs an nn.Module, got {type(module).__name__}")
    if isinstance(normalize, str) and normalize == DECLARED:
        normalize = _declared_normalize(module, name or display_name(module))
    wrapped = FeatvisModel(module, _normalize_arg(normalize), name=name or display_name(module))
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
