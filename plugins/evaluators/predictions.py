"""Batched inference shared by evaluators: logits of a whole split, without gradients."""

from __future__ import annotations

import torch
from torch import nn


def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits for every row of ``x`` in eval mode (dropout off), in batches, under no_grad."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)
