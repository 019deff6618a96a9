"""The paper-tier data layer: readers, resize arithmetic, splits, cache, ``data prepare``.

Everything runs offline on tiny fixtures written in the datasets' published formats; the
download step reads ``file://`` URLs. Tests on the real Fashion-MNIST run when Debian's
``dataset-fashion-mnist`` is installed (``/usr/share/datasets/fashion-mnist``).
"""

from __future__ import annotations

import dataclasses
import errno
import gzip
import hashlib
import io
import json
import math
import re
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from celo_bench import data
from celo_bench.data import cache, images, sources, text
from celo_bench.data import prepare as prep
from celo_bench.data.cache import DataCorruptError
from celo_bench.data.fetch import Remote
from celo_bench.data.formats import parse_cifar_records, parse_idx, read_cifar, read_idx
from celo_bench.errors import CeloBenchError, DataMissingError

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------- fixtures in source formats


def idx_bytes(arr: np.ndarray) -> bytes:
    """IDX by hand: 0, 0, type 0x08 (uint8), ndim, big-endian sizes, data."""
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_idx_set(folder: Path, n_train: int = 50, n_test: int = 10, gz: bool = True) -> dict:
    """Fashion-MNIST-shaped IDX files; image k has pixel (0, 0) = k % 256 and (0, 1) = k // 256."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out = {}
    for split, n, stem in (("train", n_train, "train"), ("test", n_test, "t10k")):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        x[:, 0, 0], x[:, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
        y = (np.arange(n) % 10).astype(np.uint8)
        for arr, kind in ((x, "images-idx3"), (y, "labels-idx1")):
            raw = idx_bytes(arr)
            name = f"{stem}-{kind}-ubyte" + (".gz" if gz else "")
            (folder / name).write_bytes(gzip.compress(raw) if gz else raw)
        out[split] = (x, y)
    return out


def cifar_record_bytes(x: np.ndarray, labels: list[int]) -> bytes:
    planes = np.transpose(x, (2, 0, 1)).tobytes()  # R plane, G plane, B plane
    return bytes(labels) + planes


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def root(tmp_path, monkeypatch):
    """An empty cache root, also exported as $CELO_BENCH_DATA; no system dataset folders."""
    r = tmp_path / "cache"
    monkeypatch.setenv(cache.ENV_VAR, str(r))
    for name, recipe in sources.RECIPES.items():
        monkeypatch.setitem(sources.RECIPES, name, dataclasses.replace(recipe, system_dirs=()))
    images.clear_memory_cache()
    yield r
    images.clear_memory_cache()


# ---------------------------------------------------------------- readers on hand-made bytes


def test_idx_reader_hand_made_bytes(tmp_path):
    raw = b"\x00\x00\x08\x03" + struct.pack(">III", 2, 3, 4) + bytes(range(24))
    np.testing.assert_array_equal(parse_idx(raw), np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    (tmp_path / "a.gz").write_bytes(gzip.compress(raw))
    assert read_idx(tmp_path / "a.gz").shape == (2, 3, 4)
    labels = b"\x00\x00\x08\x01" + struct.pack(">I", 3) + bytes([7, 0, 9])
    assert parse_idx(labels).tolist() == [7, 0, 9]
    with pytest.raises(DataCorruptError, match="truncated"):
        parse_idx(raw[:-1])
    with pytest.raises(DataCorruptError, match="not an IDX file"):
        parse_idx(b"\x1f\x8b\x08\x00" + raw[4:])
    (tmp_path / "cut.gz").write_bytes(gzip.compress(raw)[:-9])
    with pytest.raises(DataCorruptError, match="truncated"):
        read_idx(tmp_path / "cut.gz")


def test_cifar_reader_hand_made_bytes(tmp_path):
    r, c = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    x = np.stack([r, c + 100, np.full_like(r, 250)], axis=-1).astype(np.uint8)  # pixel = (row, col+100, 250)
    imgs, labels = parse_cifar_records(cifar_record_bytes(x, [7]) * 2, label_bytes=1)
    assert imgs.shape == (2, 32, 32, 3) and labels[:, 0].tolist() == [7, 7]
    assert tuple(imgs[1, 5, 9]) == (5, 109, 250)
    with pytest.raises(DataCorruptError, match="truncated"):
        parse_cifar_records(cifar_record_bytes(x, [7])[:-1], label_bytes=1)
    # CIFAR-100 records: coarse then fine label; read from a .tar.gz without extracting it
    blob = cifar_record_bytes(x, [3, 42]) + cifar_record_bytes(255 - x, [4, 99])
    archive = tmp_path / "cifar-100-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("train.bin", "test.bin"):
            info = tarfile.TarInfo(f"cifar-100-binary/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    out = read_cifar(archive, ["train.bin"], ["test.bin"], label_bytes=2, label_index=1)
    assert out["train_label"].tolist() == [42, 99] and out["test_image"].shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(out["train_image"][1], 255 - x)


# ---------------------------------------------------------------- tf.image.resize arithmetic


def test_resize_matches_hand_computation():
    # 4 -> 2: scale 2, source coordinate (i + .5) * 2 - .5 = 2i + .5: mean of rows/cols 2i, 2i+1
    x = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1)
    want = np.array([[(0 + 1 + 4 + 5) / 4, (2 + 3 + 6 + 7) / 4], [(8 + 9 + 12 + 13) / 4, (10 + 11 + 14 + 15) / 4]])
    np.testing.assert_allclose(images.resize_bilinear(x, (2, 2))[0, :, :, 0], want)
    # 2 -> 4 (edge clamping): coordinates -.25, .25, .75, 1.25 -> [a, .75a+.25b, .25a+.75b, b]
    up = images.resize_bilinear(np.array([[1, 5]], np.uint8).reshape(1, 1, 2, 1), (1, 4))
    np.testing.assert_allclose(up[0, 0, :, 0], [1, 2, 4, 5])
    # 28 -> 8 (the meta-training size): bilinear reproduces an affine image exactly, at
    # source coordinate 3.5 i + 1.25
    r, c = np.meshgrid(np.arange(28), np.arange(28), indexing="ij")
    ramp = (5 * r + 2 * c).astype(np.uint8)[None, :, :, None]
    k = 3.5 * np.arange(8) + 1.25
    np.testing.assert_allclose(images.resize_bilinear(ramp, (8, 8))[0, :, :, 0],
                               5 * k[:, None] + 2 * k[None, :], rtol=1e-6)
    # 32 -> 8: coordinate 4i + 1.5 -> mean of pixels 4i+1 and 4i+2 (per axis)
    rgb = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    out = images.resize_bilinear(rgb, (8, 8))
    f = rgb.astype(np.float64)
    hand = (f[:, 1::4] + f[:, 2::4])[:, :, 1::4] + (f[:, 1::4] + f[:, 2::4])[:, :, 2::4]
    np.testing.assert_allclose(out, hand / 4, rtol=1e-6)
    assert out.dtype == np.float32


# ---------------------------------------------------------------- prepare, cache, loaders


def _originals_via_file_urls(monkeypatch, name: str, folder: Path, corrupt: str | None = None):
    """Point `name`'s original download URLs at files in `folder` (md5 of the real files)."""
    recipe = sources.RECIPES[name]
    files = tuple(
        dataclasses.replace(o, url=(folder / o.name).as_uri(),
                            md5=("0" * 32 if o.name == corrupt else md5(folder / o.name)), sha256="")
        for o in recipe.originals
    )
    monkeypatch.setitem(sources.RECIPES, name, dataclasses.replace(recipe, originals=files))


def test_prepare_idx_end_to_end_and_splits(root, tmp_path, monkeypatch):
    server = tmp_path / "server"
    fixture = write_idx_set(server)
    _originals_via_file_urls(monkeypatch, "fashion_mnist", server)
    path = prep.prepare("fashion_mnist", source="original")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "original"
    for f in manifest["source"]["files"]:
        assert f["sha256"] == sha256(server / f["name"])
    for _field, entry in manifest["arrays"].items():
        assert entry["sha256"] == sha256(path / entry["file"])
        assert list(np.load(path / entry["file"]).shape) == entry["shape"]
    assert not cache.downloads_dir("fashion_mnist").exists()  # downloads removed after success

    ds = data.load("fashion_mnist")
    sizes = {s: ds.size(s) for s in ("train", "inner_valid", "outer_valid", "test")}
    assert sizes == {"train": 40, "inner_valid": 5, "outer_valid": 5, "test": 10}
    ids = {}
    for s in ("train", "inner_valid", "outer_valid"):
        px = ds.splits[s]["image"].astype(int)
        ids[s] = set((px[:, 0, 0, 0] + 256 * px[:, 0, 1, 0]).tolist())
    assert set().union(*ids.values()) == set(range(50))
    assert sum(len(v) for v in ids.values()) == 50  # disjoint
    x, y = fixture["test"]
    np.testing.assert_array_equal(ds.splits["test"]["image"][..., 0], x)
    assert ds.splits["test"]["label"].dtype == np.int32 and ds.info["num_classes"] == 10
    small = data.load("fashion_mnist", {"image_size": 8})
    assert small.splits["train"]["image"].shape == (40, 8, 8, 1)
    assert small.info["image_shape"] == (8, 8, 1) == data.dataset_info("fashion_mnist", {"image_size": 8})["image_shape"]


def test_corrupted_download_leaves_nothing(root, tmp_path, monkeypatch):
    server = tmp_path / "server"
    write_idx_set(server)
    _originals_via_file_urls(monkeypatch, "fashion_mnist", server, corrupt="t10k-images-idx3-ubyte.gz")
    with pytest.raises(DataCorruptError, match="md5 mismatch"):
        prep.prepare("fashion_mnist", source="original")
    assert cache.read_manifest("fashion_mnist") is None
    assert not any(p.name.startswith(".tmp-") or p.name == "fashion_mnist" for p in root.iterdir())
    assert not list(root.rglob("*.part"))
    # a truncated download whose declared size/sha256 are those of the full file
    good = server / "t10k-images-idx3-ubyte.gz"
    full_sha, full_size = sha256(good), good.stat().st_size
    cut = tmp_path / "cut.gz"
    cut.write_bytes(good.read_bytes()[: full_size // 2])
    from celo_bench.data.fetch import fetch

    with pytest.raises(DataCorruptError, match="truncated"):
        fetch(Remote(cut.as_uri(), "x.gz", size=full_size, checksums={"sha256": full_sha}), tmp_path / "dl" / "x.gz")
    assert not list((tmp_path / "dl").iterdir())
    # a truncated original file in a local folder (no checksum to compare): format error
    local = tmp_path / "local"
    write_idx_set(local)
    (local / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + struct.pack(">III", 50, 28, 28) + b"\x00" * 100))
    with pytest.raises(DataCorruptError, match="truncated"):
        prep.prepare("fashion_mnist", source="local", from_dirs=[local])
    assert cache.read_manifest("fashion_mnist") is None and not list(root.glob(".tmp-*"))


def test_unwritable_cache_is_one_line_before_any_download(root, tmp_path, monkeypatch):
    server = tmp_path / "server"
    write_idx_set(server)
    _originals_via_file_urls(monkeypatch, "fashion_mnist", server)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for target in (blocker, blocker / "data"):
        with pytest.raises(CeloBenchError, match=rf"data cache {re.escape(str(target))} cannot be written: .*is a file"):
            prep.prepare("fashion_mnist", source="original", root=target)
    assert blocker.read_text() == "not a folder"
    # a write that fails half-way (here: the disk is full) leaves no partial dataset behind
    def full(*_, **__):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(CeloBenchError, match="could not write dataset 'fashion_mnist' .*No space left"):
        prep.prepare("fashion_mnist", source="original")
    assert cache.read_manifest("fashion_mnist") is None and not list(root.glob(".tmp-*"))


def _png(x: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(x).save(buf, format="PNG")
    return buf.getvalue()


def _hub_via_files(monkeypatch, files: dict[str, list[Path]], server: Path, bad_sha: bool = False):
    def resolve(source):
        remotes = []
        for split, paths in files.items():
            if split in source.patterns:
                remotes += [Remote(p.as_uri(), p.relative_to(server).as_posix(), size=p.stat().st_size,
                                   checksums={"sha256": "f" * 64 if bad_sha else sha256(p)}, split=split)
                            for p in paths]
        return remotes, "0123abc"

    monkeypatch.setattr(prep, "resolve_hub", resolve)


def test_prepare_hub_parquet_images(root, tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    server, rng = tmp_path / "server", np.random.default_rng(2)
    files = {}
    for split, n in (("train", 20), ("test", 5)):
        x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        table = pa.table({"img": [{"bytes": _png(a), "path": None} for a in x],
                          "fine_label": (np.arange(n) * 7 % 100).astype(np.int64),
                          "coarse_label": np.zeros(n, np.int64)})
        p = server / "cifar100" / f"{split}-00000-of-00001.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, p)
        files[split] = [p]
        if split == "test":
            test_x = x
    _hub_via_files(monkeypatch, files, server, bad_sha=True)
    with pytest.raises(DataCorruptError, match="sha256 mismatch"):
        prep.prepare("cifar100", source="hub")
    assert cache.read_manifest("cifar100") is None
    _hub_via_files(monkeypatch, files, server)
    prep.prepare("cifar100", source="hub")
    m = cache.read_manifest("cifar100")
    assert m["source"]["revision"] == "0123abc" and m["arrays"]["train_image"]["shape"] == [20, 32, 32, 3]
    ds = data.load("cifar100", {"image_size": 8, "greyscale": True})
    assert ds.info == {**data.dataset_info("cifar100", {"image_size": 8, "greyscale": True}), "source": ds.info["source"]}
    assert ds.splits["test"]["image"].shape == (5, 8, 8, 1)
    hand = (test_x.astype(np.float64)[:, 1::4] + test_x[:, 2::4])
    hand = (hand[:, :, 1::4] + hand[:, :, 2::4]).mean(-1, keepdims=True) / 4
    np.testing.assert_allclose(ds.splits["test"]["image"], hand, rtol=1e-5)
    assert ds.splits["test"]["label"].tolist() == [0, 7, 14, 21, 28]


class WordTokenizer:
    """Stub for sentencepiece: word i of a fixed vocabulary -> id i + 3; unknown -> 2."""

    def __init__(self, path):
        self.vocab = {w: i + 3 for i, w in enumerate(Path(path).read_text().split())}

    def encode(self, texts):
        return [[self.vocab.get(w, 2) for w in t.split()] for t in texts]


def test_prepare_lm_end_to_end(root, tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    server = tmp_path / "server"
    words = [f"w{i}" for i in range(50)]
    (server / "vocab").mkdir(parents=True)
    (server / "vocab" / "spiece.model").write_text(" ".join(words))
    files = {"vocab": [server / "vocab" / "spiece.model"]}
    for split, n in (("train", 200), ("test", 30)):
        sents = [" ".join(words[(k + j) % 50] for j in range(1 + k % 12)) for k in range(n)]
        p = server / "plain_text" / split / "0000.parquet"
        p.parent.mkdir(parents=True)
        pq.write_table(pa.table({"text": sents}), p)
        files[split] = [p]
    _hub_via_files(monkeypatch, files, server)
    monkeypatch.setattr(prep, "load_tokenizer", WordTokenizer)
    prep.prepare("lm1b_32k", source="hub", max_seq_len=8)
    m = cache.read_manifest("lm1b_32k")
    assert m["max_seq_len"] == 8 and m["arrays"]["train_tokens"]["dtype"] == "uint16"
    assert m["tokenizer"]["sha256"] == sha256(server / "vocab" / "spiece.model")
    ds = data.load("lm1b_32k", {"seq_len": 4})
    sizes = {s: ds.size(s) for s in ("train", "inner_valid", "outer_valid", "test")}
    assert sizes == {"train": 196, "inner_valid": 2, "outer_valid": 2, "test": 30}  # train[2%:], [0:1%], [1:2%]
    tok = ds.splits["test"]["tokens"]
    assert tok.dtype == np.int32 and tok.shape == (30, 5)
    # sentence k = words k..k+k%12 -> ids 3 + (k + j) % 50, cropped to 5, padded with 0
    for k in (0, 3, 11):
        want = [3 + (k + j) % 50 for j in range(1 + k % 12)][:5]
        assert tok[k].tolist() == want + [0] * (5 - len(want))
    with pytest.raises(DataMissingError, match="--max-seq-len 32"):
        data.load("lm1b_32k", {"seq_len": 32})
    data.require("lm1b_32k", {"seq_len": 8})
    with pytest.raises(DataMissingError, match="--max-seq-len 32"):
        data.require("lm1b_32k", {"seq_len": 32})
    assert data.dataset_info("lm1b_32k", {"seq_len": 4})["vocab_size"] == 32100


def test_sentencepiece_prefix_tokenisation_is_exact(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    from pydoc_data.topics import topics

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(topics[k] for k in sorted(topics))[:200_000])
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "m"), vocab_size=300,
                                   model_type="unigram", minloglevel=2)
    tok = text.SentencePieceTokenizer(tmp_path / "m.model")
    long = [topics[k] for k in sorted(topics)[:20]]
    got = text.tokenize_batches([long], tok, 33)
    want = text.crop_or_pad(tok.sp.encode(long, out_type=int), 33)
    np.testing.assert_array_equal(got, want)


def test_missing_data_fails_at_once_with_the_command(root):
    data.require("digits")  # offline datasets always pass the pre-flight check
    with pytest.raises(DataMissingError, match=r"`celo-bench data prepare lm1b_32k`"):
        data.require("lm1b_32k", {"seq_len": 8})
    with pytest.raises(DataMissingError) as e:
        data.load("fashion_mnist")
    msg = str(e.value)
    assert "`celo-bench data prepare fashion_mnist`" in msg and str(root / "raw" / "fashion_mnist") in msg
    with pytest.raises(DataMissingError, match=r"`celo-bench data prepare wikipedia_en_32k`"):
        data.load("wikipedia_en_32k", {"seq_len": 32})
    with pytest.raises(DataMissingError, match="cannot obtain dataset 'cifar10'"):
        prep.prepare("cifar10", source="local", root=root)


def test_cli_prepare_from_folder_and_list(root, tmp_path):
    from typer.testing import CliRunner

    from celo_bench.cli import app

    write_idx_set(tmp_path / "orig", gz=False)
    runner = CliRunner()
    res = runner.invoke(app, ["data", "prepare", "mnist", "--from", str(tmp_path / "orig"), "--format", "json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)[0]
    assert row["cached"] and row["examples"]["train_image"] == 50
    res = runner.invoke(app, ["data", "list", "--verify", "--format", "json"])
    rows = {r["name"]: r for r in json.loads(res.stdout)["datasets"]}
    assert rows["mnist"]["cached"] and rows["mnist"]["corrupt_arrays"] == []
    assert not rows["cifar10"]["cached"]


# ---------------------------------------------------------------- the real Fashion-MNIST

needs_fmnist = pytest.mark.skipif(not FMNIST_DIR.is_dir(), reason="apt-get install dataset-fashion-mnist")


@needs_fmnist
def test_real_fashion_mnist(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "empty-cache"))
    images.clear_memory_cache()
    ds = data.load("fashion_mnist")
    n = {s: ds.size(s) for s in ("train", "inner_valid", "outer_valid", "test")}
    assert sum(n[s] for s in ("train", "inner_valid", "outer_valid")) == 60000 and n["test"] == 10000
    assert ds.splits["train"]["image"].shape[1:] == (28, 28, 1) and ds.info["num_classes"] == 10
    all_labels = np.concatenate([ds.splits[s]["label"] for s in ("train", "inner_valid", "outer_valid")])
    assert np.bincount(all_labels).tolist() == [6000] * 10  # the published class balance


@needs_fmnist
@pytest.mark.slow
def test_real_fashion_mnist_mlp_trains_with_adam(tmp_path, monkeypatch):
    import optax

    from celo_bench.assembly import build_task
    from celo_bench.engine import Strategy, run_job
    from celo_bench.suite import TaskSpec

    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "empty-cache"))
    spec = TaskSpec(name="ImageMLP_FashionMnist_Relu128x128", family="image_mlp", dataset="fashion_mnist",
                    batch_size=128, steps=200, model={"kind": "mlp", "hidden": [128, 128], "activation": "relu"},
                    eval_every=50)
    task = build_task(spec)
    assert task.n_params() == 784 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10
    res = run_job(task, lambda hp: optax.adam(hp["learning_rate"]), {"learning_rate": np.array([1e-3])},
                  np.array([0]), num_steps=200, strategy=Strategy("scan", "vmap"))
    ev = res.eval_loss["train"][0]
    assert abs(ev[0] - math.log(10)) < 0.3
    assert ev[-1] < 0.6 * math.log(10) and res.train_loss[0, -50:].mean() < 0.7


def test_resolve_hub_lists_matching_files_with_their_hashes(monkeypatch):
    from types import SimpleNamespace

    from celo_bench.data import fetch

    sib = [SimpleNamespace(rfilename=n, size=s, blob_id="b" * 40, lfs=lfs) for n, s, lfs in (
        ("README.md", 10, None),
        ("plain_text/train/0001.parquet", 5, {"sha256": "2" * 64}),
        ("plain_text/train/0000.parquet", 7, {"sha256": "1" * 64}),
        ("plain_text/test/0000.parquet", 3, None),
    )]
    api = SimpleNamespace(dataset_info=lambda repo, revision, files_metadata: SimpleNamespace(sha="c0ffee", siblings=sib))
    monkeypatch.setattr(fetch, "_hub_api", lambda: api)
    remotes, commit = fetch.resolve_hub(sources.RECIPES["lm1b_32k"].hub)
    assert commit == "c0ffee"
    assert [(r.split, r.name, r.size) for r in remotes] == [
        ("train", "plain_text/train/0000.parquet", 7), ("train", "plain_text/train/0001.parquet", 5),
        ("test", "plain_text/test/0000.parquet", 3)]
    assert remotes[0].checksums == {"sha256": "1" * 64} and remotes[2].checksums == {"git-sha1": "b" * 40}
    assert remotes[0].url.endswith("/datasets/billion-word-benchmark/lm1b/resolve/c0ffee/plain_text/train/0000.parquet")
    assert remotes[0].hub == fetch.HubFile("billion-word-benchmark/lm1b", "dataset", "c0ffee")  # pinned commit


def test_hub_files_come_through_hf_hub_download_and_are_checked(tmp_path, monkeypatch):
    """hf_hub_download (faked: no network) gets the pinned commit; a wrong sha256 leaves no file."""
    from celo_bench.data import fetch

    payload, calls = b"parquet bytes", []

    def fake_download(repo, filename, *, repo_type, revision, local_dir, tqdm_class):
        calls.append((repo, filename, repo_type, revision))
        out = Path(local_dir) / filename
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(payload)
        return str(out)

    monkeypatch.setattr(fetch.huggingface_hub, "hf_hub_download", fake_download)
    hub = fetch.HubFile("owner/repo", "dataset", "c0ffee")
    good = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "dl" / "plain_text" / "train.parquet"
    seen = []
    digests = fetch.fetch(fetch.Remote("u", "plain_text/train.parquet", size=len(payload),
                                       checksums={"sha256": good}, hub=hub), dest, lambda d, t: seen.append((d, t)))
    assert digests == {"md5": hashlib.md5(payload).hexdigest(), "sha256": good} and dest.read_bytes() == payload
    assert calls == [("owner/repo", "plain_text/train.parquet", "dataset", "c0ffee")]
    dest.unlink()
    with pytest.raises(DataCorruptError, match="sha256 mismatch"):
        fetch.fetch(fetch.Remote("u", "plain_text/train.parquet", checksums={"sha256": "0" * 64}, hub=hub), dest)
    assert not dest.exists()
    with pytest.raises(DataCorruptError, match="truncated"):
        fetch.fetch(fetch.Remote("u", "plain_text/train.parquet", size=99, hub=hub), dest)
    assert not dest.exists()


def test_offline_hub_download_fails_with_one_line(tmp_path, monkeypatch):
    """The real hf_hub_download in offline mode: no socket, a DataMissingError, nothing written."""
    import huggingface_hub

    from celo_bench.data import fetch

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    dest = tmp_path / "dl" / "x.parquet"
    remote = fetch.Remote("u", "x.parquet", hub=fetch.HubFile("owner/repo", "dataset", "c0ffee"))
    with pytest.raises(DataMissingError, match="cannot download") as e:
        fetch.fetch(remote, dest)
    assert "\n" not in str(e.value) and not dest.exists()


def test_missing_pooch_names_the_extra(root, tmp_path, monkeypatch, capsys):
    """Without pooch, `data prepare` says which extra to install, `[paper]` printed literally."""
    import sys

    from celo_bench.cli import main

    monkeypatch.setitem(sys.modules, "pooch", None)  # `import pooch` raises ImportError
    monkeypatch.setattr(sys, "argv", ["celo-bench", "data", "prepare", "mnist", "--source", "original"])
    with pytest.raises(SystemExit) as e:
        main()
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error: ")]
    assert e.value.code == 2 and len(errors) == 1
    assert "pip install 'celo-bench[paper]'" in errors[0] and "'mnist'" in errors[0]
