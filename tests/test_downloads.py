"""Downloads that heal (issue 28, part 4): a damaged file in the Hugging Face cache is never
used; it is removed and fetched again where the network allows, and offline it is one line
with the fix, never a stored failure. Weights and datasets share the rule and the offline test.

The hub is faked: a Hugging Face cache laid out on disk (``refs/``, ``blobs/<sha256>``,
``snapshots/<commit>/<file>`` linking to its blob) and a monkeypatched downloader.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import jax
import numpy as np
import pytest

from celo_bench import hub, inputs, pricing, weights
from celo_bench.data import fetch
from celo_bench.data.cache import DataCorruptError
from celo_bench.optimizers import checkpoint as ck
from celo_bench.optimizers._registry import factory
from celo_bench.runner import RunConfig, run
from celo_bench.store import Store
from celo_bench.suite import load_registry

OPT = "adafac_mlp_lopt"  # the smallest learned optimizer (197 values): its source is hf://amoudgl/adafac-mlp-lopt
REPO = "amoudgl/adafac-mlp-lopt"
COMMIT = "c0ffee" * 6 + "c0ff"
GRID = {"suite": "smoke", "tasks": ["smoke_digits_mlp"], "optimizers": [OPT], "steps": 10, "seeds": 1}


@pytest.fixture(scope="module")
def published() -> bytes:
    """Stand-in bytes of the published weights (the right tree, random values)."""
    theta = jax.tree_util.tree_map(np.asarray, factory(OPT).init_meta_params(jax.random.PRNGKey(3)))
    return ck.encode(theta)


def lay_out(cache: Path, data: bytes, *, keep: int | None = None) -> Path:
    """Put `data` in a Hugging Face cache layout as the hub lists it (blob named by its sha256);
    `keep`: only that many bytes arrive (an interrupted download)."""
    sha = hashlib.sha256(data).hexdigest()
    repo = cache / f"models--{REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "blobs").mkdir(exist_ok=True)
    (repo / "blobs" / sha).write_bytes(data if keep is None else data[:keep])
    link = repo / "snapshots" / COMMIT / "theta.state"
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        link.unlink()
    link.symlink_to(Path("..") / ".." / "blobs" / sha)
    return link


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.delenv(weights.ENV_FOLDER, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    inputs.clear()
    yield root
    inputs.clear()


@pytest.fixture
def online(monkeypatch, cache, published):
    """A reachable hub whose downloader serves the whole file into the cache; returns its calls."""
    import huggingface_hub

    calls = []

    def hf_hub_download(repo_id, filename, *, cache_dir=None, force_download=False, **kw):
        calls.append({"repo": repo_id, "filename": filename, "force": force_download})
        assert Path(cache_dir) == cache and (repo_id, filename) == (REPO, "theta.state")
        return str(lay_out(cache, published))

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_reachable", lambda host, port, timeout=3.0: True)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    return calls


def test_plan_reports_a_truncated_cached_file_as_not_present(cache, published, tmp_path):
    lay_out(cache, published, keep=len(published) // 2)
    reg = load_registry()
    p = pricing.price(reg, "smoke", tasks=["smoke_digits_mlp"], optimizers=[OPT], results=tmp_path / "r")
    (row,) = p.checkpoints
    assert not row["present"] and "damaged" in row["reason"]
    assert row["command"] == f"hf download {REPO} theta.state"
    # the same file, whole: present
    lay_out(cache, published)
    inputs.clear()
    (row,) = pricing.price(reg, "smoke", tasks=["smoke_digits_mlp"], optimizers=[OPT],
                           results=tmp_path / "r").checkpoints
    assert row["present"] and row["origin"] == "hub"


def test_run_refetches_a_truncated_cached_file_and_trains(cache, published, online, tmp_path):
    link = lay_out(cache, published, keep=len(published) // 2)
    summary = run(RunConfig(**GRID, results=tmp_path / "r"))
    assert summary.unavailable == {} and summary.failed == 0 and summary.executed == 1
    assert online == [{"repo": REPO, "filename": "theta.state", "force": True}]  # downloaded once, again
    assert link.read_bytes() == published
    df = Store(tmp_path / "r").read(curves=False)
    assert list(df["status"]) == ["ok"]
    assert hashlib.sha256(published).hexdigest() in df["provenance"].iloc[0]  # its key holds the good bytes


def test_offline_a_truncated_cached_file_is_one_line_and_nothing_is_stored(cache, published, tmp_path):
    lay_out(cache, published, keep=len(published) // 2)
    summary = run(RunConfig(**GRID, results=tmp_path / "r"))
    assert summary.executed == 0 and summary.failed == 0
    why = summary.unavailable[OPT]
    assert "\n" not in why and "damaged" in why and "HF_HUB_OFFLINE" in why
    assert f"fix: {weights.HUB_FIX}" in why and "huggingface-cli" not in why
    assert Store(tmp_path / "r").read(curves=False).empty  # never a stored failure
    # the damaged copy is gone: the next run where the network allows downloads it
    assert hub.cached(REPO, "theta.state") is None


def test_a_damaged_dataset_file_is_fetched_again(tmp_path, monkeypatch):
    """The dataset side of the same rule: hf_hub_download hands back a damaged local copy as
    it is; it is removed and downloaded again once, where the network allows."""

    payload, calls = b"parquet bytes", []
    dest = tmp_path / "dl" / "plain_text" / "train.parquet"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(payload[:5])  # an earlier interrupted download

    def hf_hub_download(repo, filename, *, repo_type, revision, local_dir, tqdm_class, force_download=False):
        calls.append(force_download)
        out = Path(local_dir) / filename
        if force_download or not out.exists():
            out.write_bytes(payload)
        return str(out)

    monkeypatch.setattr(fetch.huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hub, "_reachable", lambda host, port, timeout=3.0: True)
    remote = fetch.Remote("u", "plain_text/train.parquet", size=len(payload),
                          checksums={"sha256": hashlib.sha256(payload).hexdigest()},
                          hub=fetch.HubFile("owner/repo", "dataset", "c0ffee"))
    fetch.fetch(remote, dest)
    assert calls == [False, True] and dest.read_bytes() == payload


def test_weights_and_datasets_share_one_offline_rule(tmp_path, monkeypatch, cache):
    """With HF_HUB_OFFLINE unset and the hub's host unreachable, both say so and neither
    downloads; with HF_HUB_OFFLINE set after import, both count as offline too."""
    import huggingface_hub

    def never(*a, **k):
        raise AssertionError("downloaded while offline")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", never)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hub, "_reachable", lambda host, port, timeout=3.0: False)
    with pytest.raises(weights.WeightsUnavailable, match="offline: huggingface.co cannot be reached"):
        weights.fetch_hf(f"hf://{REPO}", name=OPT)
    dest = tmp_path / "dl" / "x.parquet"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"half")
    monkeypatch.setattr(fetch.huggingface_hub, "hf_hub_download", lambda *a, **k: str(dest))
    remote = fetch.Remote("u", "x.parquet", size=99, hub=fetch.HubFile("owner/repo", "dataset", "c0ffee"))
    with pytest.raises(DataCorruptError, match="huggingface.co cannot be reached") as e:
        fetch.fetch(remote, dest)
    assert "hf download owner/repo x.parquet --repo-type dataset" in str(e.value) and not dest.exists()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.offline_reason() == "HF_HUB_OFFLINE is set"
    monkeypatch.setattr(hub, "_reachable", lambda host, port, timeout=3.0: True)
    assert hub.offline()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert not hub.offline()
