"""``featvis plan``: what a whole-model job will cost, before it runs.

Counts the units and batches exactly as ``featvis render`` would cut them (:func:`featvis.jobs.batches.plan_batches`),
times a few optimization steps of one full batch on some of the layers (a short probe on this
machine's device), and turns that into device-hours and a number of shards to ask for.
"""
from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Dict, List

#: Layers probed at most; the others take the time of the nearest probed layer (in model order).
MAX_PROBED = 8


def add_arguments(p) -> None:
    from .job import LAYER_SETS
    p.add_argument("model", help="a model name (see: featvis models)")
    p.add_argument("layer", nargs="*", help="layer names, or --layers")
    p.add_argument("--layers", choices=LAYER_SETS, metavar="blocks|all", help="every block output, or every layer")
    p.add_argument("--channels", default="all", metavar="SPEC", help="per layer, as for render (default: all)")
    p.add_argument("--size", type=int, default=None, help="image size (default: 128, or the preset's)")
    p.add_argument("--steps", type=int, default=512, help="optimization steps of the job (default: 512)")
    p.add_argument("--batch", type=int, default=32, help="channels per batch, as for render (default: 32)")
    p.add_argument("--diversity", type=int, default=1, metavar="K", help="images per channel (default: 1)")
    p.add_argument("--param", choices=["fourier", "pixel", "cppn"], default=None, help="as for render (default: fourier)")
    from ..presets import PRESETS
    p.add_argument("--preset", choices=list(PRESETS) + ["auto", "none"], default=None,
                   help="as for render (default: auto, or none with --param)")
    p.add_argument("--neurons", action="store_true", help="as for render")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where to probe (default: auto)")
    p.add_argument("--weights", default="none", metavar="default|none|PATH",
                   help="weights for the probe (default: none; the time does not depend on them)")
    p.add_argument("--probe-steps", type=int, default=3, help="timed steps per probed layer, after one warm-up (default: 3)")
    p.add_argument("--hours", type=float, default=4.0,
                   help="wall-clock hours you want each shard to take, for the shard count (default: 4)")


def probe(model, layer: str, channels: List[int], settings, device, steps: int) -> float:
    """Seconds per optimization step of one batch of ``channels`` of ``layer`` (after a warm-up)."""
    import torch

    from ..render import render
    from .settings import batch_objective, recipe
    k = settings.diversity
    objective = batch_objective(layer, channels, settings.neurons, k, settings.diversity_weight)

    def once(n):
        kw = recipe(replace(settings, steps=n), len(channels) * k)
        return render(model, objective, **kw, seed=0, device=device, progress=False)
    once(1)  # allocations, cuDNN autotuning
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    once(steps)  # render() reads the values back at the end, so the GPU has finished
    return (time.perf_counter() - t0) / steps


def estimate(per_step: Dict[str, float], batches, steps: int) -> float:
    """Seconds for ``batches`` at ``steps`` steps, from each layer's seconds per step of a full batch
    (a last, smaller batch of a layer is counted as a full one: an upper bound)."""
    return sum(per_step[b.layer] * steps for b in batches)


def run(args) -> int:
    from ..errors import UsageError
    from ..models import pick_device
    from ..models.listing import probe_layer
    from ..models.open import open_model
    from ..presets import PRESETS, auto
    from ..units import parse_channels
    from .batches import plan_batches
    from .job import cli_preset, select_layers
    from .settings import DIVERSITY_WEIGHT, Settings
    args.preset = cli_preset(args.preset, args.param)
    args.preset = auto(args.model) if args.preset == "auto" else args.preset
    preset = PRESETS[args.preset] if args.preset else None
    if preset and args.param:
        raise UsageError(f"--preset {args.preset} chooses its own image param ({preset.param_name}); "
                         f"drop --param {args.param}, or drop --preset")
    args.param = args.param or "fourier"
    args.size = args.size if args.size is not None else (preset.size if preset else 128)
    for name, value, low in (("--steps", args.steps, 1), ("--batch", args.batch, 1), ("--diversity", args.diversity, 1),
                             ("--probe-steps", args.probe_steps, 1), ("--size", args.size, 8)):
        if value < low:
            raise UsageError(f"{name} {value}: must be at least {low}")
    if not args.hours > 0:
        raise UsageError(f"--hours {args.hours}: must be positive")
    if bool(args.layer) == bool(args.layers):
        raise UsageError("name the layers after the model, or give --layers blocks|all (one of the two)")
    parse_channels(args.channels)
    dev = pick_device(args.device)
    net = open_model(args.model, args.weights, dev)
    names = list(args.layer) or select_layers(net, args.layers, args.size, args.model)
    chosen = []
    for layer in names:
        shape = probe_layer(net, layer, args.size, dev)
        chosen.append((layer, parse_channels(args.channels, shape[0], f"{layer} of {args.model}")))
    batches = plan_batches(chosen, args.batch, args.diversity)
    settings = Settings(args.neurons, args.size, args.steps, preset.lr if preset else 0.05,
                        preset.param_name if preset else args.param, args.diversity, DIVERSITY_WEIGHT, 0,
                        "png", dev.type, preset=args.preset,
                        preset_revision=preset.recorded_revision() if preset else None)
    picked = sorted({round(i * (len(chosen) - 1) / max(1, MAX_PROBED - 1)) for i in range(min(MAX_PROBED, len(chosen)))})
    measured = {}
    for i in picked:
        layer, chans = chosen[i]
        measured[i] = probe(net, layer, chans[:args.batch], settings, dev, args.probe_steps)
    per_step = {layer: measured[min(measured, key=lambda j: (abs(j - i), j))] for i, (layer, _) in enumerate(chosen)}
    units = sum(len(b.units) for b in batches)
    seconds = estimate(per_step, batches, args.steps)
    hours = seconds / 3600
    kind = "GPU" if dev.type == "cuda" else "CPU"
    shards = max(1, min(len(batches), math.ceil(hours / args.hours)))
    print(f"{args.model}: {len(chosen)} layers, {units} images ({args.diversity} per channel), "
          f"{len(batches)} batches of up to {args.batch} channels, {args.steps} steps, {args.size} px")
    width = max(len(layer) for layer, _ in chosen)
    for i, (layer, chans) in enumerate(chosen):
        n = sum(1 for b in batches if b.layer == layer)
        note = "" if i in measured else "  (time of the nearest probed layer)"
        print(f"  {layer:<{width}}  {len(chans):>5} channels  {n:>4} batches  "
              f"{per_step[layer] * 1000:8.1f} ms/step{note}")
    where = f"{dev.type}" + (f" ({__import__('torch').cuda.get_device_name(dev)})" if dev.type == "cuda" else "")
    print(f"estimate: {hours:.3g} {kind}-hours on this {where} ({args.probe_steps}-step probe of {len(measured)} "
          f"layer(s); a last, smaller batch of a layer is counted as full)")
    print(f"shards: ask for {shards} (one {kind} each) to take about {hours / shards:.2g} h each "
          f"(--hours {args.hours:g}); e.g. torchrun --nproc-per-node {min(shards, 8)} -m featvis render ... "
          f"or sbatch --array=0-{shards - 1} examples/slurm_array.sh")
    return 0
