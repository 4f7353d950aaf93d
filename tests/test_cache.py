"""The artifact cache verifies what it reads and shares builds between processes.

Real files, real torch, real processes: every kind of damage a cache directory meets (a
truncated write, garbage, a file of the old headerless format, two files swapped, a flipped
byte, a payload torch refuses) must raise ``ArtifactDamaged`` with a plain message, move the
file aside and never let torch's ``weights_only`` advice through.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import time
import traceback
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from benchmark.cache import MAGIC, ArtifactCache, ArtifactDamaged


class NotWeights:
    """An object a ``weights_only`` load refuses: its class is not on torch's allow-list."""


def state_dict() -> OrderedDict[str, torch.Tensor]:
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.arange(6.0).reshape(2, 3))
        model.bias.copy_(torch.tensor([-1.0, 0.5]))
    return model.state_dict()


def assert_damaged(cache: ArtifactCache, kind: str, key: str, reason: str) -> ArtifactDamaged:
    """Loading raises with ``reason`` in a plain message, and the file is moved aside."""
    path = cache.path(kind, key)
    with pytest.raises(ArtifactDamaged) as info:
        cache.load(kind, key)
    exc = info.value
    message = str(exc)
    assert message.startswith(f"artifact {path} is damaged (")
    assert message.endswith("); it is discarded and rebuilt")
    assert reason in exc.reason
    assert "weights_only" not in message and "weights only" not in message.lower()
    shown = "".join(traceback.format_exception(exc))  # what an uncaught error would print
    assert "weights_only" not in shown and "weights only" not in shown.lower()
    assert not cache.has(kind, key) and not path.exists()
    assert path.with_name(path.name + ".damaged").is_file()
    return exc


def test_state_dict_round_trip_is_loaded_with_weights_only(tmp_path, monkeypatch):
    cache = ArtifactCache(tmp_path)
    original = state_dict()
    path = cache.save("models", "abc", original, meta={"seed": 3})
    assert path == tmp_path / "models" / "abc.pt" and cache.has("models", "abc")
    assert json.loads(path.with_suffix(".json").read_text()) == {"seed": 3}

    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append((kwargs.get("weights_only"), kwargs.get("map_location")))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    loaded = cache.load("models", "abc")
    assert calls == [(True, "cpu")]
    assert isinstance(loaded, OrderedDict) and list(loaded) == ["weight", "bias"]
    for name, tensor in original.items():
        assert torch.equal(loaded[name], tensor)
    model = torch.nn.Linear(3, 2)
    model.load_state_dict(loaded)  # the module metadata survives the copy to the CPU
    assert torch.equal(model.weight, original["weight"])


def test_file_starts_with_a_header_that_matches_the_payload(tmp_path):
    import hashlib

    cache = ArtifactCache(tmp_path)
    data = cache.save("attributions", "k1", torch.ones(2, 2)).read_bytes()
    assert data.startswith(MAGIC)
    line, payload = data[len(MAGIC) :].split(b"\n", 1)
    header = json.loads(line)
    assert header == {
        "format": 1,
        "kind": "attributions",
        "key": "k1",
        "length": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }


def test_saved_tensors_are_detached_and_moved_to_the_cpu(tmp_path, monkeypatch):
    """Without a GPU: every tensor, however nested, goes through ``.detach().cpu()``."""
    moved = []
    real_cpu = torch.Tensor.cpu

    def spy_cpu(self, *args, **kwargs):
        moved.append(tuple(self.shape))
        return real_cpu(self, *args, **kwargs)

    saved = []
    real_save = torch.save

    def spy_save(obj, f, *args, **kwargs):
        saved.append(obj)
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", spy_cpu)
    monkeypatch.setattr(torch, "save", spy_save)
    weight = torch.nn.Parameter(torch.ones(2, 3))  # requires grad, as a trained weight does
    obj = {"state": OrderedDict(w=weight), "maps": [torch.zeros(4), (torch.ones(1), 7)]}
    ArtifactCache(tmp_path).save("models", "nested", obj)

    assert sorted(moved) == [(1,), (2, 3), (4,)]
    (written,) = saved
    tensors = [written["state"]["w"], written["maps"][0], written["maps"][1][0]]
    assert all(t.device.type == "cpu" and not t.requires_grad for t in tensors)
    assert type(written["state"]) is OrderedDict and written["maps"][1][1] == 7
    assert weight.requires_grad  # the caller's object is left as it was


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_weights_saved_on_a_gpu_load_on_the_cpu(tmp_path):
    cache = ArtifactCache(tmp_path)
    cache.save("models", "gpu", torch.nn.Linear(3, 2).cuda().state_dict())
    loaded = cache.load("models", "gpu")
    assert all(t.device.type == "cpu" for t in loaded.values())


@pytest.mark.parametrize(
    ("cut", "reason"),
    [
        (lambda n: 5, "no header"),
        (lambda n: len(MAGIC) + 10, "header"),
        (lambda n: n // 2, "truncated:"),
        (lambda n: n - 1, "truncated:"),
    ],
    ids=["in-magic", "in-header", "half", "last-byte"],
)
def test_truncated_file_is_damaged_and_moved_aside(tmp_path, cut, reason):
    cache = ArtifactCache(tmp_path)
    path = cache.save("models", "abc", state_dict())
    data = path.read_bytes()
    path.write_bytes(data[: cut(len(data))])
    assert_damaged(cache, "models", "abc", reason)


def test_a_second_damaged_file_replaces_the_first_one_moved_aside(tmp_path):
    cache = ArtifactCache(tmp_path)
    path = cache.path("models", "abc")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"first")
    assert_damaged(cache, "models", "abc", "no header")
    path.write_bytes(b"second")
    assert_damaged(cache, "models", "abc", "no header")
    assert path.with_name("abc.pt.damaged").read_bytes() == b"second"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (bytes(range(256)) * 2, "not a cache artifact: no header"),
        (MAGIC + b"{not json\n" + bytes(32), "unreadable header"),
        (MAGIC + b'{"format": 1}\n', "unreadable header"),
        (MAGIC + b"x" * 5000, "truncated or unreadable header"),
        (b"", "no header"),
    ],
    ids=["random", "bad-json", "missing-fields", "endless-header", "empty"],
)
def test_garbage_is_damaged(tmp_path, data, reason):
    cache = ArtifactCache(tmp_path)
    cache.path("models", "abc").parent.mkdir(parents=True)
    cache.path("models", "abc").write_bytes(data)
    assert_damaged(cache, "models", "abc", reason)


def test_old_headerless_format_is_damaged(tmp_path):
    cache = ArtifactCache(tmp_path)
    cache.path("models", "abc").parent.mkdir(parents=True)
    torch.save(state_dict(), cache.path("models", "abc"))  # what the cache used to write
    assert_damaged(cache, "models", "abc", "old format without header and checksum")


def test_swapped_files_are_detected_by_their_keys(tmp_path):
    cache = ArtifactCache(tmp_path)
    a = cache.save("models", "aaa", {"w": torch.zeros(3)})
    b = cache.save("models", "bbb", {"w": torch.ones(3)})
    a.rename(tmp_path / "swap")
    b.rename(a)
    (tmp_path / "swap").rename(b)
    exc = assert_damaged(cache, "models", "aaa", "key mismatch")
    assert exc.reason == "key mismatch: the file holds models/bbb, not models/aaa"
    exc = assert_damaged(cache, "models", "bbb", "key mismatch")
    assert exc.reason == "key mismatch: the file holds models/aaa, not models/bbb"


def test_a_file_moved_to_another_kind_is_detected(tmp_path):
    cache = ArtifactCache(tmp_path)
    path = cache.save("models", "abc", torch.zeros(1))
    cache.path("attributions", "abc").parent.mkdir(parents=True)
    path.rename(cache.path("attributions", "abc"))
    assert_damaged(cache, "attributions", "abc", "holds models/abc, not attributions/abc")


def test_flipped_payload_byte_is_a_checksum_mismatch(tmp_path):
    cache = ArtifactCache(tmp_path)
    path = cache.save("models", "abc", state_dict())
    data = bytearray(path.read_bytes())
    data[-40] ^= 0x01
    path.write_bytes(bytes(data))
    exc = assert_damaged(cache, "models", "abc", "checksum mismatch")
    assert str(exc) == (
        f"artifact {path} is damaged (checksum mismatch); it is discarded and rebuilt"
    )


def test_payload_torch_refuses_never_mentions_weights_only(tmp_path):
    """The checksum is right but the payload holds a class a weights-only load refuses:
    torch's message (advice to pass ``weights_only=False``) must not surface."""
    cache = ArtifactCache(tmp_path)
    cache.save("models", "abc", {"w": torch.zeros(1), "obj": NotWeights()})
    exc = assert_damaged(cache, "models", "abc", "payload unreadable: UnpicklingError")
    assert exc.reason == "payload unreadable: UnpicklingError"
    assert "weights_only" not in "".join(map(str, exc.args))


def test_damaged_is_picklable_for_worker_processes(tmp_path):
    exc = pickle.loads(pickle.dumps(ArtifactDamaged(tmp_path / "m.pt", "checksum mismatch")))
    assert exc.reason == "checksum mismatch" and str(exc).startswith(f"artifact {tmp_path}")


def test_load_or_build_builds_once_then_hits(tmp_path):
    cache = ArtifactCache(tmp_path)
    builds = []

    def build():
        builds.append(1)
        return state_dict()

    obj, status = cache.load_or_build("models", "abc", build, meta={"seed": 0})
    assert status == "trained" and cache.last_damage is None and len(builds) == 1
    again, status = cache.load_or_build("models", "abc", build)
    assert status == "hit" and len(builds) == 1 and cache.last_damage is None
    assert all(torch.equal(again[k], obj[k]) for k in obj)
    assert ArtifactCache(tmp_path).load_or_build("models", "abc", build)[1] == "hit"
    assert (tmp_path / "models" / "abc.lock").is_file()


def test_load_or_build_rebuilds_a_damaged_artifact_and_says_so(tmp_path):
    cache = ArtifactCache(tmp_path)
    path = cache.save("models", "abc", {"w": torch.zeros(2)})
    path.write_bytes(path.read_bytes()[:-3])

    obj, status = cache.load_or_build("models", "abc", lambda: {"w": torch.ones(2)})
    assert status == "rebuilt" and torch.equal(obj["w"], torch.ones(2))
    assert cache.last_damage is not None
    assert cache.last_damage.startswith(f"artifact {path} is damaged (truncated:")
    assert torch.equal(cache.load("models", "abc")["w"], torch.ones(2))
    assert path.with_name("abc.pt.damaged").is_file()
    _, status = cache.load_or_build("models", "abc", lambda: pytest.fail("rebuilt twice"))
    assert status == "hit" and cache.last_damage is None


def test_a_failing_build_saves_nothing_and_releases_the_lock(tmp_path):
    cache = ArtifactCache(tmp_path)

    def build():
        raise RuntimeError("diverged")

    with pytest.raises(RuntimeError, match="diverged"):
        cache.load_or_build("models", "abc", build)
    assert not cache.has("models", "abc")
    assert cache.load_or_build("models", "abc", lambda: torch.ones(1))[1] == "trained"


def slow_build(counter: str) -> dict[str, torch.Tensor]:
    """Counts its runs in ``counter`` and returns a value unique to its process."""
    with open(counter, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(0.5)
    return {"pid": torch.tensor([float(os.getpid())])}


def _worker(root: str, counter: str, out: str, barrier) -> None:
    barrier.wait()
    obj, status = ArtifactCache(root).load_or_build("models", "shared", lambda: slow_build(counter))
    Path(out).write_text(json.dumps({"status": status, "pid": obj["pid"].item()}))


def test_two_processes_build_a_key_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    counter = tmp_path / "builds.txt"
    outs = [tmp_path / f"out{i}.json" for i in range(2)]
    workers = [
        ctx.Process(target=_worker, args=(str(tmp_path / "c"), str(counter), str(o), barrier))
        for o in outs
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0]
    assert len(counter.read_text().splitlines()) == 1
    results = [json.loads(o.read_text()) for o in outs]
    assert sorted(r["status"] for r in results) == ["hit", "trained"]
    assert results[0]["pid"] == results[1]["pid"] == float(counter.read_text().strip())
