"""Content-addressed artifact cache: trained weights and attributions, keyed by a hash.

Why. A cache file is trusted blindly by the next run, so a bad one is worse than none: a
truncated model file, or two files swapped on disk (a copy between machines, a hand-made
"fix"), used to give wrong numbers with exit status 0. Every artifact therefore carries its
own address and a checksum, and a file that fails either is *damaged*: it is moved aside and
rebuilt, and the user reads one plain sentence about it. In particular torch's advice to retry
with ``weights_only=False`` must never reach the user: that would unpickle code from a
directory that is data (``tests/test_cache.py`` holds the code to it).

File format (``FORMAT`` = 1), one file ``<root>/<kind>/<key>.pt``::

    MAGIC                     b"BENCH-ARTIFACT\\n"
    header                    one JSON line, sorted keys, ending in b"\\n":
                              {"format": 1, "kind": ..., "key": ..., "length": <payload
                              bytes>, "sha256": <hex digest of the payload>}
    payload                   torch.save(obj) into bytes, every tensor ``.detach().cpu()``

Tensors, also inside dicts, lists and tuples (state dicts included), are moved to the CPU
before saving, so weights trained on a GPU load on any machine. ``load`` checks, in this
order, the magic, the header, that the header's kind and key are the ones asked for, the
length and the sha256, then reads the payload with ``torch.load(weights_only=True,
map_location="cpu")``. Any failure raises ``ArtifactDamaged`` and renames the file to
``<key>.pt.damaged`` (replacing an older one), so that ``has`` is then False. A file in the
old headerless format (plain ``torch.save``) counts as damaged: it is rebuilt once. An optional
JSON sidecar ``<key>.json`` records how the artifact was made; it is informative only and
never read back.

Writes go to a temporary file in the same folder that is renamed into place with
``os.replace``, so a reader sees either the old file or the new one, never half of one.

Locks. ``lock(kind, key)`` holds an exclusive ``fcntl.flock`` on ``<root>/<kind>/<key>.lock``,
so that worker processes sharing a cache never build the same key twice at the same time;
``load_or_build`` takes it around its check-build-save. The lock belongs to the open file, so
the OS releases it when the holder dies (no stale locks to clean up). Lock files are left in
place: deleting one while another process waits on it would let a third lock a new file of
the same name. Limits: ``flock`` excludes processes on one host, on local filesystems; on
NFS across hosts it is only as good as the mount (use a lock-capable mount, NFSv4 or ``lockd``),
and it is POSIX only (no Windows). Two threads of one process that use *separate* opens also
exclude each other, as each ``lock`` opens the file anew.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

DEFAULT_DIR = Path(".bench") / "cache"

MAGIC = b"BENCH-ARTIFACT\n"
"""First bytes of every artifact; a file without them is not (or no longer) ours."""

FORMAT = 1
"""Version of the header; a file of another version is treated as damaged and rebuilt."""

_MAX_HEADER = 4096
"""A header line longer than this is garbage, not a header (keys are short hashes)."""


class ArtifactDamaged(Exception):
    """A cache file failed verification; it has been moved aside to ``<name>.damaged``.

    ``path`` is the file as it was named, ``reason`` the plain-words cause ("checksum
    mismatch", "truncated: ..."). The message is meant for the user as it stands.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"artifact {self.path} is damaged ({reason}); it is discarded and rebuilt")

    def __reduce__(self) -> tuple[Any, ...]:
        # Keeps the exception picklable across worker processes despite the two arguments.
        return (type(self), (str(self.path), self.reason))


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


def _to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor detached and on the CPU, through dicts, lists and tuples."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        # A copy keeps the dict's type and attributes: a state dict is an OrderedDict whose
        # ``_metadata`` holds the per-module versions that ``load_state_dict`` reads.
        out = copy.copy(obj)
        out.clear()
        out.update((k, _to_cpu(v)) for k, v in obj.items())
        return out
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        items = [_to_cpu(v) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    return obj


def _atomic_write(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file in the same folder."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _torch_reason(exc: Exception) -> str:
    """Why torch could not read a payload, without torch's advice about ``weights_only``."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    lowered = text.lower()
    if not text or "weights_only" in lowered or "weights only" in lowered or len(text) > 160:
        return f"payload unreadable: {type(exc).__name__}"
    return f"payload unreadable: {type(exc).__name__}: {text}"


class ArtifactCache:
    """One directory per artifact kind (``models``, ``attributions``), one file per key.

    After each ``load_or_build``, ``last_damage`` is the message of the ``ArtifactDamaged``
    that call met and rebuilt over (status ``"rebuilt"``), else None. It belongs to the last
    call on this instance: a caller that shares one instance between threads reads the
    status instead.
    """

    def __init__(self, root: str | Path = DEFAULT_DIR) -> None:
        self.root = Path(root)
        self.last_damage: str | None = None

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.pt"

    def has(self, kind: str, key: str) -> bool:
        """Whether a file is stored for the key (verified only by ``load``)."""
        return self.path(kind, key).is_file()

    def save(self, kind: str, key: str, obj: Any, meta: dict[str, Any] | None = None) -> Path:
        """Atomically write ``obj`` (tensors / state dicts, moved to the CPU) with its header,
        and an optional JSON sidecar ``meta``."""
        target = self.path(kind, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(_to_cpu(obj), buffer)
        payload = buffer.getvalue()
        header = {
            "format": FORMAT,
            "kind": kind,
            "key": key,
            "length": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
        }
        line = json.dumps(header, sort_keys=True).encode() + b"\n"
        _atomic_write(target, MAGIC + line + payload)
        if meta is not None:
            text = json.dumps(meta, indent=1, sort_keys=True, default=str)
            _atomic_write(target.with_suffix(".json"), text.encode())
        return target

    def load(self, kind: str, key: str) -> Any:
        """The verified object stored for the key, tensors on the CPU.

        Raises ``FileNotFoundError`` when nothing is stored and ``ArtifactDamaged`` (after
        moving the file aside) when what is stored fails verification.
        """
        target = self.path(kind, key)
        with open(target, "rb") as f:
            inode = os.fstat(f.fileno()).st_ino
            data = f.read()
        try:
            return self._decode(kind, key, data)
        except ArtifactDamaged:
            self._move_aside(target, inode)
            raise

    def _decode(self, kind: str, key: str, data: bytes) -> Any:
        """Verify ``data`` as the artifact ``kind``/``key`` and unpickle its payload."""
        where = self.path(kind, key)
        if not data.startswith(MAGIC):
            if data.startswith(b"PK\x03\x04"):
                raise ArtifactDamaged(where, "old format without header and checksum")
            raise ArtifactDamaged(where, "not a cache artifact: no header")
        end = data.find(b"\n", len(MAGIC), len(MAGIC) + _MAX_HEADER)
        if end < 0:
            raise ArtifactDamaged(where, "truncated or unreadable header")
        try:
            header = json.loads(data[len(MAGIC) : end])
            version, length, checksum = header["format"], header["length"], header["sha256"]
            stored = (header["kind"], header["key"])
        except (ValueError, KeyError, TypeError):
            raise ArtifactDamaged(where, "unreadable header") from None
        if version != FORMAT:
            raise ArtifactDamaged(where, f"format version {version!r}, this code reads {FORMAT}")
        if stored != (kind, key):
            raise ArtifactDamaged(
                where, f"key mismatch: the file holds {stored[0]}/{stored[1]}, not {kind}/{key}"
            )
        payload = data[end + 1 :]
        if len(payload) < length:
            raise ArtifactDamaged(where, f"truncated: {len(payload)} of {length} payload bytes")
        if len(payload) > length:
            raise ArtifactDamaged(where, f"{len(payload)} payload bytes, header says {length}")
        if hashlib.sha256(payload).hexdigest() != checksum:
            raise ArtifactDamaged(where, "checksum mismatch")
        try:
            return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        except Exception as exc:
            # ``from None``: torch's own text (advice to pass weights_only=False) stays out
            # of the traceback as well as out of the message.
            raise ArtifactDamaged(where, _torch_reason(exc)) from None

    @staticmethod
    def _move_aside(target: Path, inode: int) -> None:
        """Rename a damaged file to ``<name>.damaged``, unless it has meanwhile been replaced
        (another process rebuilt it: the new file is not ours to discard)."""
        with contextlib.suppress(FileNotFoundError):
            if os.stat(target).st_ino == inode:
                os.replace(target, target.with_name(target.name + ".damaged"))

    @contextlib.contextmanager
    def lock(self, kind: str, key: str) -> Iterator[Path]:
        """Hold an exclusive ``flock`` on ``<root>/<kind>/<key>.lock`` (blocking) while inside.

        Excludes other processes on this host (see the module docstring for NFS); released by
        the OS if the holder dies. Yields the lock file's path.
        """
        import fcntl  # POSIX only; imported here so that the rest of the cache works anywhere

        target = self.root / kind / f"{key}.lock"
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield target
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def load_or_build(
        self,
        kind: str,
        key: str,
        build: Callable[[], Any],
        meta: dict[str, Any] | None = None,
    ) -> tuple[Any, str]:
        """The artifact for the key and how it was got: ``"hit"``, ``"trained"`` or
        ``"rebuilt"``.

        Double-checked: a valid stored artifact is returned without the lock; otherwise,
        under ``lock(kind, key)``, the store is checked again (another process may just have
        built it) and only then ``build()`` is called and its result saved. ``"rebuilt"``
        means a damaged file was found and replaced; its message is then in
        ``self.last_damage``. A hit returns the loaded (CPU) object, a build what ``build``
        returned.
        """
        self.last_damage = None
        found = self._try_load(kind, key)
        if found is not None:
            return found[0], "hit"
        with self.lock(kind, key):
            found = self._try_load(kind, key)
            if found is not None:
                return found[0], "hit"
            obj = build()
            self.save(kind, key, obj, meta=meta)
        return obj, "rebuilt" if self.last_damage is not None else "trained"

    def _try_load(self, kind: str, key: str) -> tuple[Any] | None:
        """``(obj,)`` when a valid artifact is stored, else None (noting damage)."""
        try:
            return (self.load(kind, key),)
        except FileNotFoundError:
            return None
        except ArtifactDamaged as exc:
            self.last_damage = str(exc)
            return None
