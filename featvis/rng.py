"""Per-image random streams: image i of a batch draws only from its own generator.

So a batch of 32 channels gets 32 independent streams, each equal to what a single render with
that image's seed would draw, and a channel's image does not depend on which batch it landed in.
The generators live on the CPU, which also makes a seed give the same draws on CPU and CUDA.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

import numpy as np
import torch

Seed = Union[None, int, Sequence[int]]


def image_seeds(seed: Seed, batch: int) -> List[int]:
    """One 63-bit seed per image: ``seed`` (an int) spread over the batch, or a list as given.

    An int seed gives image i the seed derived from ``(seed, i)`` with NumPy's SeedSequence, so
    images of one render get unrelated streams. ``None`` draws fresh seeds from the OS.
    """
    if seed is None:
        return [int(s) for s in np.random.SeedSequence().generate_state(batch, dtype=np.uint64) >> np.uint64(1)]
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return [derive_seed(check_seed(seed), i) for i in range(batch)]
    if isinstance(seed, (str, bytes, float, bool)) or not hasattr(seed, "__iter__"):
        raise TypeError(f"seed={seed!r}: expected an int from 0 to 2**63 - 1, one such int per image, or None")
    seeds = [check_seed(s) for s in seed]
    if len(seeds) != batch:
        raise ValueError(f"seed has {len(seeds)} entries but the batch has {batch} images; give one seed per image or an int")
    return seeds


#: Seeds are 63-bit non-negative ints (what :func:`derive_seed` makes).
MAX_SEED = 2**63 - 1


def check_seed(seed) -> int:
    """``seed`` as an int in 0 .. 2**63 - 1; TypeError/ValueError naming it otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed={seed!r}: expected an int from 0 to 2**63 - 1 (a {type(seed).__name__} was given)")
    if not 0 <= int(seed) <= MAX_SEED:
        raise ValueError(f"seed={seed}: expected an int from 0 to 2**63 - 1")
    return int(seed)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from a tuple of non-negative ints (e.g. ``(run_seed, channel, k)``)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class RandomSource:
    """Independent uniform draws for each image of a batch, from one CPU generator per image."""

    def __init__(self, seeds: Sequence[int], device: Optional[torch.device] = None):
        self.seeds = list(seeds)
        self.generators = [torch.Generator().manual_seed(s) for s in self.seeds]
        self.device = torch.device(device) if device is not None else torch.device("cpu")

    def __len__(self):
        return len(self.generators)

    def uniform(self, n: int, device=None) -> torch.Tensor:
        """(B, n) floats in [0, 1) on ``device`` (the source's own by default); row i from image i's
        generator. One call of ``uniform(a + b)`` gives the same numbers as ``uniform(a)`` then
        ``uniform(b)``, side by side."""
        draws = torch.stack([torch.rand(n, generator=g) for g in self.generators])
        return to_device(draws, self.device if device is None else device)

    def normal(self, shape: Sequence[int]) -> torch.Tensor:
        """(B, *shape) standard normal draws on the CPU (for initializing params)."""
        return torch.stack([torch.randn(*shape, generator=g) for g in self.generators])


def to_device(t: torch.Tensor, device) -> torch.Tensor:
    """A CPU tensor on ``device`` without making the host wait for the GPU (pinned, non-blocking copy)."""
    device = torch.device(device)
    if device.type == "cpu":
        return t
    if device.type == "cuda":
        # A copy from pageable memory would wait for the GPU's queue to drain; from pinned memory
        # it is queued like a kernel.
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def as_source(rng, batch: int, device) -> RandomSource:
    """A :class:`RandomSource` from ``None`` (fresh seeds), an int seed, a ``torch.Generator``, or itself."""
    if isinstance(rng, RandomSource):
        if len(rng) != batch:
            raise ValueError(f"random source has {len(rng)} streams but the batch has {batch} images")
        return rng
    if isinstance(rng, torch.Generator):
        # One seed per image drawn from the given generator: still one stream per image.
        seeds = torch.randint(0, 2**62, (batch,), generator=rng, device=rng.device).tolist()
        return RandomSource(seeds, device)
    return RandomSource(image_seeds(rng, batch), device)
