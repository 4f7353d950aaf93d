"""Model-independent controls: what a benchmark must show real explainers beat.

* ``random``: i.i.d. standard normal attributions, the control of ROAR (Hooker et al. 2019,
  "A benchmark for interpretability methods in deep neural networks"). The noise of each
  image is drawn from a generator seeded with ``seed`` and the image's bytes, so an image
  gets the same map whatever batch it comes in, and the map never depends on the model.
* ``sobel``: the Sobel gradient magnitude of the image itself, an edge detector that ignores
  the model; the sanity checks of Adebayo et al. 2018 ("Sanity checks for saliency maps")
  show that some saliency methods are barely distinguishable from it. It is the magnitude of
  scikit-image's ``filters.sobel`` per channel (kernels ``[1, 2, 1] / 4 x [1, 0, -1]``,
  ``sqrt((h^2 + v^2) / 2)``, edges replicated), computed as one batched convolution instead of a
  Python loop over images; ``tests/test_explainers.py`` checks it against scikit-image.

Both are written here: no attribution library ships them as explainers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.kit.seeding import generator, image_seed
from benchmark.specs import ExplainerSpec
from plugins.explainers.capabilities import NOTHING, explainer_spec


def random_attributions(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, seed: int = 0
) -> torch.Tensor:
    """Standard normal noise, one channel, seeded per image; ``model`` and ``target`` unused."""
    n, _, h, w = x.shape
    maps = torch.empty(n, 1, h, w, dtype=torch.float32)
    for i in range(n):  # one draw per image (not per pixel): the seed depends on the image
        maps[i] = torch.randn(1, h, w, generator=generator(image_seed(seed, x[i])))
    return maps.to(x.device)


def sobel(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-channel Sobel gradient magnitude of ``x``; ``model`` and ``target`` unused."""
    n, c, h, w = x.shape
    smooth = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float32, device=x.device) / 4
    diff = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float32, device=x.device)
    kernels = torch.stack([smooth[:, None] * diff[None, :], diff[:, None] * smooth[None, :]])
    with torch.no_grad():
        flat = x.detach().to(torch.float32).reshape(n * c, 1, h, w)
        padded = F.pad(flat, (1, 1, 1, 1), mode="replicate")
        edges = F.conv2d(padded, kernels.unsqueeze(1))  # (N * C, 2, H, W)
        magnitude = edges.pow(2).mean(dim=1).sqrt()
    return magnitude.reshape(n, c, h, w)


def specs() -> list[ExplainerSpec]:
    """The two controls, for ``plugins.explainers`` to register."""
    return [
        explainer_spec(
            "random",
            random_attributions,
            NOTHING,
            "control: Gaussian noise seeded per image (Hooker+ 2019)",
        ),
        explainer_spec(
            "sobel", sobel, NOTHING, "control: Sobel edge magnitude of the image (Adebayo+ 2018)"
        ),
    ]
