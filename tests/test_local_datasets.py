"""The datasets a user keeps on disk: each loader reads tiny files written here in the real
formats (IDX plain and gzip, CIFAR-10's pickled batches, PNG folders, a CSV with groups), and
refuses a missing or malformed one at plan time (``checked_params``, what ``bench plan`` runs)
or at load time, with a message naming the parameter or the file."""

from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.suite import ParamError, checked_params
from plugins import datasets as datasets_plugin
from plugins.datasets import cifar10, idx, idx_mnist
from tests.conftest import bench

RNG = np.random.default_rng(0)
IDX_NAMES = idx_mnist.FILES.values()


def spec(name):
    specs = []
    datasets_plugin.bench_register_datasets(register=specs.append)
    return {s.name: s for s in specs}[name]


def refused_at_plan_time(name, *fragments, **params):
    """``checked_params`` (the plan-time check) refuses ``params``, naming every fragment."""
    with pytest.raises(ParamError) as info:
        checked_params(spec(name), params)
    for fragment in fragments:
        assert fragment in info.value.message, info.value.message
    return info.value


# -- IDX: fashion-mnist, mnist-full ------------------------------------------------------------


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    dims = np.asarray(array.shape, dtype=">u4").tobytes()
    return bytes([0, 0, type_code, array.ndim]) + dims + array.astype(">u1").tobytes()


def write_idx_set(folder, n_train=20, n_test=10, gz=False):
    """A tiny IDX set (two / one image per class), returned as the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train images": RNG.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train labels": np.arange(n_train, dtype=np.uint8) % 10,
        "test images": RNG.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test labels": np.arange(n_test, dtype=np.uint8) % 10,
    }
    arrays["train images"][0] = 255  # the full range, so [0, 1] is reached exactly
    arrays["train images"][1] = 0
    for what, name in idx_mnist.FILES.items():
        data = idx_bytes(arrays[what])
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize(
    ("gz", "where"), [(False, "."), (True, "."), (True, "FashionMNIST/raw"), (False, "raw")]
)
def test_fashion_mnist_reads_idx_files_plain_gzip_and_torchvision_layout(tmp_path, gz, where):
    arrays = write_idx_set(tmp_path / where, gz=gz)
    params = checked_params(spec("fashion-mnist"), {"root": str(tmp_path)})  # plan time
    data = spec("fashion-mnist").factory(**params)
    assert data.num_classes == 10 and data.class_names[0] == "T-shirt/top"
    assert data.class_names[-1] == "Ankle boot" and len(set(data.class_names)) == 10
    for split, which in ((data.train, "train"), (data.test, "test")):
        assert split.x.shape == (len(arrays[f"{which} labels"]), 1, 28, 28)
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        expected = arrays[f"{which} images"][:, None].astype(np.float32) / 255
        assert np.array_equal(split.x.numpy(), expected)  # the official order, unshuffled
        assert split.y.tolist() == arrays[f"{which} labels"].tolist()
        assert torch.equal(split.groups, split.y) and split.groups is not split.y
    assert data.train.x.min() == 0 and data.train.x.max() == 1


def test_mnist_full_has_digit_names_and_stratified_limits(tmp_path):
    write_idx_set(tmp_path, gz=True)
    data = spec("mnist-full").factory(root=str(tmp_path), train_limit=10, test_limit=10)
    assert data.class_names == tuple("0123456789")
    assert torch.bincount(data.train.y, minlength=10).tolist() == [1] * 10
    assert len(data.test) == 10
    again = spec("mnist-full").factory(root=str(tmp_path), train_limit=10)
    assert torch.equal(again.train.x, data.train.x)  # the same subset on every call
    assert spec("fashion-mnist").provides == {"images", "groups"}
    assert all(spec(n).version for n in ("fashion-mnist", "mnist-full", "cifar10"))


def test_idx_root_missing_or_absent_is_refused_at_plan_time(tmp_path):
    refused_at_plan_time("fashion-mnist", "'fashion-mnist'", "params: {root:", "t10k-images")
    with pytest.raises(ValueError, match="parameter 'root' of dataset 'fashion-mnist': required"):
        spec("fashion-mnist").factory()  # the same message when loading
    missing = tmp_path / "Not/There"
    error = refused_at_plan_time("fashion-mnist", str(missing), "does not exist", root=str(missing))
    assert error.name == "root"
    refused_at_plan_time("mnist-full", "none of the IDX files", "MNIST/raw", root=str(tmp_path))
    write_idx_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    refused_at_plan_time("mnist-full", "lacks t10k-labels-idx1-ubyte", root=str(tmp_path))


def test_idx_wrong_magic_and_truncated_files_are_named(tmp_path):
    write_idx_set(tmp_path)
    labels = tmp_path / "train-labels-idx1-ubyte"
    good = labels.read_bytes()
    labels.write_bytes(b"\x08\x03" + good[2:])
    refused_at_plan_time("fashion-mnist", str(labels), "magic number 0x0803", root=str(tmp_path))
    with pytest.raises(ValueError, match="magic number"):
        idx.read_idx(labels)
    images = tmp_path / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-5])
    labels.write_bytes(good)
    refused_at_plan_time("fashion-mnist", str(images), "bytes, but its header", root=str(tmp_path))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: truncated"):
        idx.read_idx(images)
    # gzip: the header is fine, so the truncation shows when loading
    gz_root = tmp_path / "gz"
    write_idx_set(gz_root, gz=True)
    gz_images = gz_root / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(gz_images.read_bytes())
    gz_images.write_bytes(gzip.compress(raw[:-28]))
    checked_params(spec("fashion-mnist"), {"root": str(gz_root)})
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz: truncated"):
        spec("fashion-mnist").factory(root=str(gz_root))
    gz_images.write_bytes(gzip.compress(raw)[:-10])  # a cut gzip stream
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz: unreadable"):
        spec("fashion-mnist").factory(root=str(gz_root))


# -- CIFAR-10 --------------------------------------------------------------------------------

CIFAR_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer"]
CIFAR_NAMES += [b"dog", b"frog", b"horse", b"ship", b"truck"]


def write_cifar(root, protocol=2, per_batch=10):
    """Batches as the real ones are: dicts with bytes keys, ``b"data"`` uint8 (N, 3072)."""
    folder = root / cifar10.FOLDER
    folder.mkdir(parents=True)
    written = {}
    for name in (*cifar10.TRAIN_BATCHES, "test_batch"):
        data = RNG.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [i % 10 for i in range(per_batch)]
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data}
        batch[b"filenames"] = [f"{i}.png".encode() for i in range(per_batch)]
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        written[name] = (data, labels)
    meta = {b"num_cases_per_batch": per_batch, b"label_names": CIFAR_NAMES, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return written


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("inner", [False, True])
def test_cifar10_reads_pickled_batches(tmp_path, protocol, inner):
    written = write_cifar(tmp_path, protocol)
    root = tmp_path / cifar10.FOLDER if inner else tmp_path
    data = spec("cifar10").factory(**checked_params(spec("cifar10"), {"root": str(root)}))
    assert data.class_names == tuple(n.decode() for n in CIFAR_NAMES) and data.num_classes == 10
    assert data.train.x.shape == (50, 3, 32, 32) and data.test.x.shape == (10, 3, 32, 32)
    first, labels = written["data_batch_1"]
    # row = 1,024 red values, then green, then blue, each a row-major 32x32 image
    assert np.array_equal(data.train.x[0, 1].numpy() * 255, first[0, 1024:2048].reshape(32, 32))
    assert data.train.y[:10].tolist() == labels
    assert np.allclose(data.test.x.numpy() * 255, written["test_batch"][0].reshape(-1, 3, 32, 32))
    assert torch.equal(data.test.groups, data.test.y)
    small = spec("cifar10").factory(root=str(root), train_limit=20, test_limit=10)
    assert torch.bincount(small.train.y).tolist() == [2] * 10


def test_cifar10_missing_batch_and_absent_root_are_refused_at_plan_time(tmp_path):
    refused_at_plan_time("cifar10", "params: {root:", "data_batch_1")
    write_cifar(tmp_path)
    (tmp_path / cifar10.FOLDER / "data_batch_3").unlink()
    refused_at_plan_time("cifar10", "lacks data_batch_3", str(tmp_path), root=str(tmp_path))
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    refused_at_plan_time("cifar10", "extract cifar-10-python.tar.gz", root=str(tmp_path))


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar10_refuses_a_pickle_that_imports_os_system(tmp_path):
    write_cifar(tmp_path)
    batch = tmp_path / cifar10.FOLDER / "data_batch_2"
    marker = tmp_path / "ran"
    batch.write_bytes(pickle.dumps({b"data": RunsCode(marker), b"labels": [0]}, protocol=2))
    with pytest.raises(ValueError, match=r"data_batch_2: not a CIFAR-10 batch: refused .*system"):
        spec("cifar10").factory(root=str(tmp_path))
    assert not marker.exists()
    batch.write_bytes(b"cbuiltins\neval\n(V1+1\ntR.")  # GLOBAL builtins.eval, called
    with pytest.raises(ValueError, match=r"refused to load global builtins\.eval"):
        cifar10.read_batch(batch)
    batch.write_bytes(pickle.dumps({b"labels": [0]}))
    with pytest.raises(ValueError, match=r"data_batch_2: not a CIFAR-10 batch \(no 'data'"):
        spec("cifar10").factory(root=str(tmp_path))
    batch.write_bytes(b"\x80\x02}q\x00(")  # cut short
    with pytest.raises(ValueError, match="data_batch_2: not a CIFAR-10 batch"):
        spec("cifar10").factory(root=str(tmp_path))


# -- image folders -----------------------------------------------------------------------------


def write_png(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)


def write_classes(folder, classes=("cat", "dog"), per_class=5, shape=(6, 8)):
    """PNGs ``folder/<class>/<i>.png`` of ``shape`` (H, W); returns ``path -> pixels``."""
    pixels = {}
    for name in classes:
        for i in range(per_class):
            rgb = RNG.integers(0, 256, (*shape, 3), dtype=np.uint8)
            write_png(folder / name / f"{i}.png", rgb)
            pixels[folder / name / f"{i}.png"] = rgb
    return pixels


def test_image_folder_classes_split_resize_and_channels(tmp_path):
    pixels = write_classes(tmp_path, per_class=5)
    params = checked_params(spec("image-folder"), {"root": str(tmp_path), "size": [6, 8]})
    data = spec("image-folder").factory(**params)
    assert data.class_names == ("cat", "dog") and data.num_classes == 2
    assert (len(data.train), len(data.test)) == (8, 2)  # test_fraction 0.2, one per class
    assert torch.bincount(data.test.y).tolist() == [1, 1] and data.train.groups is None
    assert data.train.x.shape == (8, 3, 6, 8) and data.train.x.is_contiguous()
    all_pixels = {rgb.transpose(2, 0, 1).tobytes() for rgb in pixels.values()}
    seen = {(x.numpy() * 255).round().astype(np.uint8).tobytes() for x in data.train.x}
    assert seen <= all_pixels  # the exact pixels, RGB in channel order
    again = spec("image-folder").factory(**params)
    assert torch.equal(again.test.x, data.test.x)  # a fixed split
    grey = spec("image-folder").factory(root=str(tmp_path), size=[4, 4], channels=1)
    assert grey.train.x.shape == (8, 1, 4, 4) and 0 <= grey.train.x.min() <= grey.train.x.max() <= 1


def test_image_folder_uses_train_and_test_folders(tmp_path):
    write_classes(tmp_path / "train", per_class=3)
    write_classes(tmp_path / "test", classes=("dog",), per_class=2)
    data = spec("image-folder").factory(root=str(tmp_path))
    assert (len(data.train), len(data.test)) == (6, 2) and data.test.y.tolist() == [1, 1]
    assert data.train.x.shape[1:] == (3, 32, 32)  # resized to the default size


def write_csv(root, rows, header="path,label,group,split"):
    (root / "meta.csv").write_text(header + "\n" + "\n".join(rows) + "\n")


def test_image_folder_groups_from_a_csv(tmp_path):
    pixels = write_classes(tmp_path / "img", classes=("a",), per_class=8)
    paths = sorted(pixels)
    rows = [
        f"img/a/{i}.png,{'waterbird' if i % 2 else 'landbird'},{i // 4},"
        f"{'test' if i >= 6 else 'train'}"
        for i in range(8)
    ]
    rows[0] = f"{paths[0]},landbird,0,train"  # an absolute path
    write_csv(tmp_path, rows)
    params = checked_params(
        spec("image-folder-groups"), {"root": str(tmp_path), "csv": "meta.csv", "size": [6, 8]}
    )
    data = spec("image-folder-groups").factory(**params)
    assert data.class_names == ("landbird", "waterbird")
    assert data.train.y.tolist() == [0, 1, 0, 1, 0, 1] and data.test.y.tolist() == [0, 1]
    assert data.train.groups.tolist() == [0, 0, 0, 0, 1, 1] and data.test.groups.tolist() == [1, 1]
    expected = pixels[tmp_path / "img/a/6.png"].transpose(2, 0, 1) / np.float32(255)
    assert np.allclose(data.test.x[0].numpy(), expected)
    assert spec("image-folder-groups").provides == {"images", "groups"}
    plain = spec("image-folder").factory(**{**params, "csv": str(tmp_path / "meta.csv")})
    assert plain.train.groups is None and spec("image-folder").provides == {"images"}
    write_csv(tmp_path, [f"img/a/{i}.png,{i % 2}" for i in range(8)], header="path,label")
    ints = spec("image-folder").factory(root=str(tmp_path), csv="meta.csv", test_fraction=0.5)
    assert ints.class_names == ("0", "1") and (len(ints.train), len(ints.test)) == (4, 4)


def test_image_folder_refusals_name_the_parameter_and_file(tmp_path):
    refused_at_plan_time("image-folder", "'image-folder'", "params: {root:")
    write_classes(tmp_path / "img", classes=("a", "b"), per_class=2)
    refused_at_plan_time(
        "image-folder-groups", "groups come from a CSV", "path,label,group", root=str(tmp_path)
    )
    error = refused_at_plan_time(
        "image-folder", "'image-folder'", "class sub-folders", root=str(tmp_path / "img/a")
    )
    assert error.name == "root"
    refused_at_plan_time("image-folder", "holds no .png", root=str(tmp_path))  # img/ is no class
    write_csv(tmp_path, ["img/a/0.png,a"], header="path,label")
    error = refused_at_plan_time(
        "image-folder-groups", "meta.csv", "no column group", root=str(tmp_path), csv="meta.csv"
    )
    assert error.name == "csv"
    refused_at_plan_time("image-folder", "does not exist", root=str(tmp_path), csv="Nope.csv")
    write_csv(tmp_path, ["img/a/0.png,a,0,val"])
    refused_at_plan_time("image-folder", "meta.csv:2", "'val'", root=str(tmp_path), csv="meta.csv")
    write_csv(tmp_path, ["img/a/0.png,a,0,train", "img/b/0.png,b,0,train"])
    refused_at_plan_time(
        "image-folder", "marks every row 'train'", root=str(tmp_path), csv="meta.csv"
    )
    img = str(tmp_path / "img")
    refused_at_plan_time("image-folder", "cannot split 4 images", root=img, test_fraction=0.9)
    # at load time: a row naming a missing image, an unreadable image
    rows = ["img/a/0.png,a", "img/a/1.png,a", "img/b/0.png,b", "img/b/1.png,b", "img/a/9.png,a"]
    write_csv(tmp_path, rows, header="path,label")
    with pytest.raises(ValueError, match=r"meta.csv:6: image .*img/a/9.png does not exist"):
        spec("image-folder").factory(root=str(tmp_path), csv="meta.csv", test_fraction=0.5)
    (tmp_path / "img/b/1.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"img/b/1.png: unreadable image"):
        spec("image-folder").factory(root=str(tmp_path / "img"), test_fraction=0.5)


# -- end to end: bench plan --------------------------------------------------------------------

SUITE = """\
name: local
datasets:
  - name: fashion-mnist
    params: {{root: {root}, train_limit: 10}}
models: [mlp]
debiasers: [none]
evaluators: [classification]
seeds: [0]
leaderboard: {{metric: accuracy}}
"""


def test_bench_plan_refuses_a_missing_root_and_plans_an_existing_one(tmp_path):
    missing = tmp_path / "Fashion" / "Missing"
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE.format(root=missing))
    result = bench("plan", "--suite", str(path), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in (f"{path}:4:", "datasets[0].params.root", "'fashion-mnist'", str(missing)):
        assert fragment in result.stderr, result.stderr
    assert "train-images-idx3-ubyte" in result.stderr
    write_idx_set(tmp_path / "data", gz=True)
    path.write_text(SUITE.format(root=tmp_path / "data"))
    result = bench("plan", "--suite", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 jobs" in result.stdout and "fashion-mnist" in result.stdout


def test_check_value_keeps_the_case_of_a_validators_message(tmp_path):
    from benchmark.params import check_value

    types = spec("cifar10").param_types()
    message = check_value(types["root"], str(tmp_path / "CIFAR"))
    assert message.startswith(f"{tmp_path}/CIFAR does not exist; it should hold cifar-10-batches")
    assert check_value(types["train_limit"], 0).startswith("input should be greater than 0")


def test_docs_snippets_name_registered_datasets_and_parameters():
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parent.parent / "docs" / "local-datasets.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"^```yaml\n(.*?)^```", text, re.M | re.S)]
    entries = [entry for block in blocks for entry in block["datasets"]]
    for entry in entries:
        assert set(entry["params"]) <= set(spec(entry["name"]).params), entry
    names = {entry["name"] for entry in entries}
    assert names == {
        "fashion-mnist",
        "mnist-full",
        "cifar10",
        "image-folder",
        "image-folder-groups",
    }
