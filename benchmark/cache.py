"""Content-addressed artifact cache: trained weights and attributions, keyed by a hash.

Writes go to a temporary file that is renamed into place, so a run killed mid-write never
leaves a truncated artifact that a later run would trust. Reads use
``torch.load(weights_only=True)``: a cache directory is data, never code to unpickle.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

DEFAULT_DIR = Path(".bench") / "cache"


def tensor_fingerprint(*tensors: torch.Tensor | None) -> str:
    """Hash of tensor contents, shapes and dtypes: the address of data an evaluator modified."""
    h = hashlib.sha256()
    for tensor in tensors:
        if tensor is None:
            h.update(b"none")
            continue
        t = tensor.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:20]


class ArtifactCache:
    """One directory per artifact kind (``models``, ``attributions``), one file per key."""

    def __init__(self, root: str | Path = DEFAULT_DIR) -> None:
        self.root = Path(root)

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.pt"

    def has(self, kind: str, key: str) -> bool:
        return self.path(kind, key).is_file()

    def load(self, kind: str, key: str) -> Any:
        return torch.load(self.path(kind, key), map_location="cpu", weights_only=True)

    def save(self, kind: str, key: str, obj: Any, meta: dict[str, Any] | None = None) -> Path:
        """Atomically write ``obj`` (tensors / state dicts) and an optional JSON sidecar."""
        target = self.path(kind, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        os.close(fd)
        try:
            torch.save(obj, tmp)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        if meta is not None:
            target.with_suffix(".json").write_text(
                json.dumps(meta, indent=1, sort_keys=True, default=str)
            )
        return target
