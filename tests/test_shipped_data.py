"""The dataset that ships inside the package: sha256-checked, loads offline, remade byte for byte."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from celo_bench import data
from celo_bench.data import shipped
from celo_bench.data.cache import DataCorruptError
from celo_bench.errors import DataMissingError

NAME = "fashion_mnist_14"
ORIGINALS = Path("/usr/share/datasets/fashion-mnist")


def test_shipped_files_match_their_pinned_sha256_and_notice():
    where = shipped.folder(NAME)
    notice = (where / "NOTICE.md").read_text()
    for file, expected in shipped.SHIPPED[NAME].sha256.items():
        got = hashlib.sha256((where / file).read_bytes()).hexdigest()
        assert got == expected, file
        assert expected in notice, f"NOTICE.md does not give the sha256 of {file}"
        assert (where / file).stat().st_size <= 5 * 2**20, f"{file} is over 5 MiB"
    assert "MIT" in notice and "arXiv:1708.07747" in notice and "celo-bench data derive" in notice


def test_loads_offline_as_a_class_balanced_14x14_dataset(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ds = data.load(NAME)
    assert set(ds.splits) == {"train", "inner_valid", "outer_valid", "test"}
    n_train = sum(len(ds.splits[s]["label"]) for s in ("train", "inner_valid", "outer_valid"))
    assert n_train == 30_000 and len(ds.splits["test"]["label"]) == 10_000
    assert ds.splits["train"]["image"].shape[1:] == (14, 14, 1)
    assert ds.splits["train"]["image"].dtype == np.uint8
    all_labels = np.concatenate([ds.splits[s]["label"] for s in ("train", "inner_valid", "outer_valid")])
    assert np.bincount(all_labels, minlength=10).tolist() == [3000] * 10
    assert np.bincount(ds.splits["test"]["label"], minlength=10).tolist() == [1000] * 10
    assert data.dataset_info(NAME) == {"num_classes": 10, "image_shape": (14, 14, 1)}
    # real images, not a constant: pixel statistics of Fashion-MNIST (mean ~73 of 255)
    assert 60 < ds.splits["test"]["image"].mean() < 90


def test_a_changed_byte_fails_the_check_with_the_fix(tmp_path):
    copy = tmp_path / NAME
    shutil.copytree(shipped.folder(NAME), copy)
    target = copy / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(target.read_bytes())
    raw[-1] ^= 0xFF
    target.write_bytes(bytes(raw))
    with pytest.raises(DataCorruptError, match="sha256.*reinstall celo-bench"):
        shipped.verify(NAME, copy)
    target.unlink()
    with pytest.raises(DataMissingError, match="missing"):
        shipped.verify(NAME, copy)


@pytest.mark.skipif(not ORIGINALS.is_dir(), reason="the originals: apt-get install dataset-fashion-mnist")
def test_derive_remakes_the_shipped_files_byte_for_byte(tmp_path):
    sums = shipped.derive(NAME, ORIGINALS, tmp_path)
    assert sums == shipped.SHIPPED[NAME].sha256


def test_the_language_models_text_ships_and_does_not_follow_the_running_python(tmp_path, monkeypatch):
    """The pydoc text is read from the package copy (sha256-checked), not from this Python's
    pydoc_data, so its run keys and the shipped reference results hold on any Python release."""
    import sys

    shipped.verify("pydoc_text")
    raw = shipped.text_bytes("pydoc_text")
    assert len(raw) == 466_273 and raw.decode("utf-8").startswith("The \"assert\" statement")
    monkeypatch.setitem(sys.modules, "pydoc_data.topics", None)  # any import of it fails
    ds = data.load("pydoc_text", {"seq_len": 8})
    assert ds.splits["train"]["tokens"].shape[1] == 9
    notice = (shipped.folder("pydoc_text") / "NOTICE.md").read_text()
    assert shipped.SHIPPED_TEXT["pydoc_text"].sha256 in notice and "PYTHON SOFTWARE FOUNDATION LICENSE" in notice
    monkeypatch.delitem(sys.modules, "pydoc_data.topics")
    if sys.version_info[:3] == (3, 11, 7):  # the release it copies: remade byte for byte
        assert shipped.derive_text("pydoc_text", tmp_path) == {"topics.txt.gz": shipped.SHIPPED_TEXT["pydoc_text"].sha256}
