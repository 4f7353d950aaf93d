"""Small convolutional autoencoders, trained once per set of images and cached by content.

Van Looveren & Klaise (2021) need them twice: the prototype-guided counterfactual search
encodes images to find class prototypes and penalises a counterfactual the autoencoder
reconstructs badly, and their IM1 / IM2 interpretability scores compare reconstructions by
autoencoders trained on one class each and on all classes. An autoencoder is a property of
its training images, not of a job: the cache key is the images' fingerprint and the training
settings, with a fixed seed, so every job, explainer and evaluator on a dataset shares them.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.cache import ArtifactCache, tensor_fingerprint
from benchmark.kit.seeding import generator, seeded
from benchmark.records import digest

ARCHITECTURE = "conv16-pool-conv1/v1"
"""Changes with the layers below: part of every cache key."""
AUTOENCODER_KIND = "autoencoder"


class ConvAutoencoder(nn.Module):
    """Encoder: two 3x3 convolutions (16 channels), a 2x2 max-pool and a 3x3 convolution to one
    channel, so the code is a half-resolution image (alibi's MNIST example has the same
    shape). Decoder: the mirror, upsampled back to the input's exact size, sigmoid output."""

    def __init__(self, channels: int, size: tuple[int, int]) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(16, 1, 3, padding=1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Upsample(size=tuple(size)),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, channels, 3, padding=1),
            nn.Sigmoid(),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def train_autoencoder(
    images: torch.Tensor, *, steps: int, batch_size: int = 64, lr: float = 1e-3, seed: int = 0
) -> ConvAutoencoder:
    """Adam on the mean squared reconstruction error, ``steps`` minibatches drawn with
    replacement (so a class of 400 images and a dataset of 4,000 get the same training)."""
    channels, height, width = images.shape[1:]
    with seeded(seed, images.device):
        model = ConvAutoencoder(int(channels), (int(height), int(width))).to(images.device)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    gen = generator(seed, images.device)
    model.train()
    for _ in range(steps):
        rows = torch.randint(0, len(images), (min(batch_size, len(images)),), generator=gen,
                             device=images.device)  # fmt: skip
        batch = images[rows]
        loss = nn.functional.mse_loss(model(batch), batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def cached_autoencoder(
    images: torch.Tensor, cache_dir: str, *, steps: int, batch_size: int = 64, lr: float = 1e-3
) -> ConvAutoencoder:
    """The autoencoder of ``images``, trained once (seed 0) and then loaded from the cache."""
    channels, height, width = (int(s) for s in images.shape[1:])
    key = digest(
        {
            "architecture": ARCHITECTURE,
            "images": tensor_fingerprint(images),
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
        }
    )

    def build() -> dict[str, torch.Tensor]:
        return train_autoencoder(images, steps=steps, batch_size=batch_size, lr=lr).state_dict()

    if cache_dir:
        state, _ = ArtifactCache(cache_dir).load_or_build(AUTOENCODER_KIND, key, build)
    else:
        state = build()
    with seeded(0, images.device):  # the weights are replaced: only the global state matters
        model = ConvAutoencoder(channels, (height, width)).to(images.device)
    model.load_state_dict(state)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval()


def class_autoencoders(
    images: torch.Tensor, labels: torch.Tensor, classes: int, cache_dir: str, *, steps: int
) -> list[ConvAutoencoder | None]:
    """One autoencoder per class (``None`` for a class without images), for IM1 / IM2."""
    return [
        cached_autoencoder(images[labels == c], cache_dir, steps=steps)
        if bool((labels == c).any())
        else None
        for c in range(classes)
    ]
