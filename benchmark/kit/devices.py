"""Devices, for the built-in plugins: where a model lives, numbers back on the CPU, and seeded
re-initialisation that draws the same weights on every device.

The core moves a job's data and model to its device (``bench run --device``) before a plugin
sees them, so a plugin creates its own tensors on the device of those it was given and hands
its numbers back on the CPU. Random draws stay on the CPU whatever the device: a job's numbers
on the CPU are then bit-identical to those of a CPU-only run, and a model re-initialised while
it sits on a GPU gets the very weights it would get on the CPU (CUDA's generator draws another
stream from the same seed). ``tests/test_cuda.py`` compares the two devices where a GPU is
present.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn


def device_of(module: nn.Module) -> torch.device:
    """The device of the module's first parameter (or buffer); the CPU for a module with none."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        return tensor.device
    return torch.device("cpu")


def as_numpy(value: Any) -> np.ndarray:
    """``value`` as a NumPy array: a tensor is detached and copied to the CPU first."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


@contextmanager
def forked_rng(device: torch.device | str = "cpu") -> Iterator[None]:
    """Fork torch's CPU generator for the block, and the CUDA ones when ``device`` is CUDA:
    ``torch.manual_seed`` inside the block seeds every device, so without the fork it would
    reset the random stream of a caller that trains or evaluates on the GPU."""
    device = torch.device(device)
    cuda = list(range(torch.cuda.device_count())) if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        yield


def initialise_on_cpu(
    module: nn.Module, seed: int, initialise: Callable[[nn.Module], None]
) -> nn.Module:
    """Run ``initialise(module)`` with torch seeded by ``seed``, on the CPU, and return
    ``module`` (changed in place) on the device it came from; the caller's random state on
    every device is left as it was.

    A module on the CPU is initialised where it is, exactly as before devices existed; one on
    another device makes the round trip, so it gets the same weights as on the CPU.
    """
    device = device_of(module)
    with forked_rng(device):
        torch.manual_seed(seed)
        if device.type == "cpu":
            initialise(module)
        else:
            module.to("cpu")
            try:
                initialise(module)
            finally:
                module.to(device)
    return module
