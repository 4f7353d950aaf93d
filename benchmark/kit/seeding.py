"""Seeded randomness that neither reads nor disturbs the global random state.

Noise-based explainers (SmoothGrad, VarGrad, GradientSHAP, KernelSHAP, LIME) must give the
same attributions for the same inputs and parameters whatever ran before them, and must not
shift the random stream of the job that calls them (training, evaluation). Captum draws its
noise from torch's global generator and GradientSHAP's interpolation points from numpy's, so
:func:`seeded` forks both, seeds them, and restores them on exit. Our own samplers take a
local :class:`torch.Generator` from :func:`generator`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


@contextmanager
def seeded(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Seed torch (CPU and ``device``) and numpy for the block; restore both afterwards."""
    device = torch.device(device)
    devices = [device] if device.type == "cuda" else []
    numpy_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(seed))
            np.random.seed(int(seed) % 2**32)
            yield
    finally:
        np.random.set_state(numpy_state)


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh local generator seeded with ``seed``."""
    return torch.Generator(device=device).manual_seed(int(seed))


def image_seed(seed: int, image: torch.Tensor) -> int:
    """A 63-bit seed from ``seed`` and the bytes of one image, so that an image gets the same
    random draw whatever batch, position or order it comes in."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(int(seed).to_bytes(8, "little", signed=True))
    digest.update(image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return int.from_bytes(digest.digest(), "little") >> 1


def stream_seed(seed: int, stream: int) -> int:
    """A 32-bit seed for one named random stream of a job (augmentation draws, an auxiliary
    head's initialisation): independent of the job's other streams and of the global state,
    the same on every device. ``stream`` is a constant the component keeps (its own id)."""
    return int(np.random.SeedSequence([int(seed), int(stream)]).generate_state(1)[0])
