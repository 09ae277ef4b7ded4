"""The shared ImageNet nets (../shared/models) as featvis model names, for command-line benchmarks.

    PYTHONPATH=benchmarks FEATVIS_PLUGINS=shared_models_plugin featvis render imagenet-mobilenet-v2 net.features.12 ...

registers ``imagenet-mobilenet-v2``, ``imagenet-resnet50`` and ``imagenet-squeezenet`` (ImageNet-trained, [0, 1] RGB in,
1000 logits out; their weights are fixed: ``--weights default``). Test assets, not part of featvis.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
for path in (os.path.join(HERE, "..", "..", "shared", "models"), "/work/shared/models"):
    if os.path.isdir(path) and path not in sys.path:
        sys.path.insert(0, path)

from featvis.errors import UsageError  # noqa: E402
from featvis.models import register, wrap  # noqa: E402


def _build(factory, name, weights):
    if weights not in ("default", None):
        raise UsageError(f"{name} has fixed weights (../shared/models); drop --weights {weights}")
    import imagenet_models as im
    return wrap(getattr(im, factory)(), normalize=None, name=name)


@register("imagenet-mobilenet-v2", "ImageNet MobileNetV2 of ../shared/models (benchmarks only)")
def mobilenet_v2(weights="default"):
    return _build("mobilenet_v2", "imagenet-mobilenet-v2", weights)


@register("imagenet-squeezenet", "ImageNet SqueezeNet of ../shared/models (benchmarks only)")
def squeezenet(weights="default"):
    return _build("squeezenet", "imagenet-squeezenet", weights)


@register("imagenet-resnet50", "ImageNet ResNet-50 of ../shared/models (benchmarks only)")
def resnet50(weights="default"):
    return _build("resnet50", "imagenet-resnet50", weights)
