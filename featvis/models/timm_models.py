"""timm's models by name: ``load_model("timm:convnext_tiny")``, ``featvis render timm:resnet50 layer3``.

The model is built by timm (the optional extra ``featvis[timm]``); its normalization and input
size come from the model's own pretrained config, ``--layers blocks`` from timm's feature info
(the stage outputs it exposes for feature extraction), layer names are timm's module paths
(``stages.2``, ``blocks.5``). Vision transformers are built with ``dynamic_img_size=True`` (their
position embedding interpolated to the image size) and declare their token layout (class and
register tokens, then the patch grid); layers that timm runs channels last (ConvNeXt's MLPs) are
found by one probe at build time and declared (:mod:`featvis.models.layout`).

``weights``: ``"default"`` downloads timm's pretrained weights through timm (cached by
huggingface_hub); a path (``.pth``/``.safetensors``) or ``hf-hub:ORG/REPO`` is loaded strictly into
the architecture, whose input channels and classes follow the checkpoint (a 1-channel first conv
makes a grayscale model); ``None`` gives random weights.
"""
from __future__ import annotations

import difflib
import functools
from typing import List, Optional

from ..errors import NotFound, UsageError, one_line
from . import weights as W
from .layout import detect_layouts, tokens
from .wrap import IMAGENET_MEAN, IMAGENET_STD, FeatvisModel

#: The prefix that names a timm model: ``timm:resnet50``.
PREFIX = "timm:"


def import_timm():
    """timm, or a UsageError that says how to install it."""
    try:
        import timm
    except ImportError:
        raise UsageError("timm models need the timm library, which is not installed here: pip install featvis[timm] "
                         "(or pip install timm)") from None
    return timm


class TimmModel(FeatvisModel):
    """A timm network as a featvis model; ``input_size`` is the (H, W) of its pretrained config."""

    input_size: Optional[tuple] = None

    def block_layers(self) -> List[str]:
        """The modules of timm's feature info (stage or block outputs), as ``--layers blocks``."""
        info = getattr(self.net, "feature_info", None) or []
        names = [f["module"] for f in info if isinstance(f, dict) and f.get("module")]
        table = self.named_layers()
        return [n for n in names if n in table] or super().block_layers()


def check_name(name: str) -> str:
    """``name`` (with an optional ``.tag``, e.g. ``convnext_tiny.fb_in22k``) if timm knows it, else
    a NotFound with close matches."""
    timm = import_timm()
    arch = name.split(".")[0]
    if not arch or not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; close matches: {', '.join(PREFIX + c for c in close)}" if close else ""
        raise NotFound(f"no timm model {name!r}{hint} (see: python -c \"import timm; print(timm.list_models('*{arch[:6]}*'))\")")
    return name


def _create(timm, name: str, **kwargs):
    """``timm.create_model``, with ``dynamic_img_size=True`` and ``dynamic_img_pad=True`` where the
    model takes them (ViTs: any image size, the position embedding interpolated, the image padded to
    whole patches), without them where the model does not."""
    try:
        return timm.create_model(name, dynamic_img_size=True, dynamic_img_pad=True, **kwargs)
    except TypeError as e:
        if "dynamic_img" not in str(e):
            raise
    return timm.create_model(name, **kwargs)


def _fits_checkpoint(cfg: dict, state_dict) -> dict:
    """``timm.create_model`` arguments that make the architecture fit ``state_dict``: its input
    channels (the first conv's weight) and its classes (the classifier's)."""
    kwargs = {}
    if state_dict is None:
        return kwargs
    first = cfg.get("first_conv")
    first = first[0] if isinstance(first, (list, tuple)) else first
    w = state_dict.get(f"{first}.weight") if first else None
    if w is not None and w.dim() == 4:
        kwargs["in_chans"] = int(w.shape[1])
    head = cfg.get("classifier")
    head = head[0] if isinstance(head, (list, tuple)) else head
    w = state_dict.get(f"{head}.weight") if head else None
    if w is not None and w.dim() >= 2:
        kwargs["num_classes"] = int(w.shape[0])
    elif head and not any(k.startswith(head + ".") for k in state_dict):
        kwargs["num_classes"] = 0  # a backbone without its classifier
    return kwargs


def build_timm(name: str, weights="default") -> FeatvisModel:
    """timm's ``name`` wrapped as a featvis model (see the module's docstring for ``weights``)."""
    timm = import_timm()
    check_name(name)
    if weights == "default":
        try:
            net = _create(timm, name, pretrained=True)
        except Exception as e:  # no network, no such pretrained tag, a hub error
            raise W.WeightsError(
                f"timm could not get the pretrained weights of {name} ({one_line(e, 200)}); download them where there "
                f"is a network (they are cached by huggingface_hub), or pass --weights PATH / hf-hub:ORG/REPO, or "
                f"--weights none for random weights") from e
    else:
        state_dict, source = W.resolve(weights, name, None)
        cfg = dict(timm.models.get_pretrained_cfg(name.split(".")[0]).to_dict()) if state_dict is not None else {}
        factory = functools.partial(_create, timm, name, pretrained=False, **_fits_checkpoint(cfg, state_dict))
        net = W.build(factory, state_dict, source, PREFIX + name)
    return wrap_timm(net, name)


def wrap_timm(net, name: str) -> TimmModel:
    """A timm network as a :class:`TimmModel`: its config's normalization (averaged over RGB for
    a net with other than 3 input channels), its token layout, its channels-last layers."""
    cfg = dict(getattr(net, "pretrained_cfg", None) or {})
    mean, std = tuple(cfg.get("mean") or IMAGENET_MEAN), tuple(cfg.get("std") or IMAGENET_STD)
    first = _first_conv(net, cfg)
    chans = int(first.weight.shape[1]) if first is not None and first.weight.dim() == 4 else 3
    if chans != len(mean):  # timm adapts a 3-channel conv to other inputs by summing; stats: their mean
        mean, std = (sum(mean) / len(mean),) * chans, (sum(std) / len(std),) * chans
    model = TimmModel(net, normalize=(mean, std), name=PREFIX + name, tokens=_tokens(net))
    size = cfg.get("input_size")
    model.input_size = tuple(size[-2:]) if size else None
    H = (model.input_size or (224, 224))[0]
    # a non-square probe tells height from width; 32 divides it (timm's largest common stride)
    model.layouts.update(detect_layouts(model, (H, max(32, H * 3 // 4 // 32 * 32)), chans))
    return model


def _first_conv(net, cfg):
    first = cfg.get("first_conv")
    first = first[0] if isinstance(first, (list, tuple)) else first
    try:
        return net.get_submodule(first) if first else None
    except AttributeError:
        return None


def _tokens(net):
    """The token layout of a timm ViT (class token, register tokens, then the patches), or None."""
    embed = getattr(net, "patch_embed", None)
    prefix = getattr(net, "num_prefix_tokens", None)
    if embed is None or prefix is None or not hasattr(embed, "patch_size"):
        return None
    names = ["cls"] if getattr(net, "cls_token", None) is not None else []
    names += [f"reg{i}" for i in range(int(prefix) - len(names))]
    return tokens(tuple(embed.patch_size), names, padded=bool(getattr(embed, "dynamic_img_pad", False)))
