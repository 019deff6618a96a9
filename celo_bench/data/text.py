"""Language-modelling datasets of the paper: LM1B and English Wikipedia, T5 32k sentencepiece.

Reference pipeline (learned_optimization ``tasks/datasets/language.py``): every example
(an LM1B sentence, a Wikipedia article) is tokenised with
``seqio.SentencePieceVocabulary(cc_all.32000, extra_ids=100)`` (no BOS/EOS added),
cropped to its first ``seq_len + 1`` tokens or right-padded with 0, and a model sees
``obs = t[:-1]``, ``target = t[1:]`` with padding targets masked.

The cache stores every example once, cropped/padded to ``max_seq_len + 1`` tokens
(uint16, vocabulary < 65536), in source order; a task's ``seq_len`` takes the first
``seq_len + 1`` columns, which is exactly what cropping at that length gives.
Splits are the reference's percentage slices (``lm_splits`` in
:mod:`celo_bench.data.sources`) of one fixed permutation (``default_rng(0)``) of the
source training set (TFDS's shuffled storage order cannot be reproduced).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from celo_bench.data import cache
from celo_bench.data._splits import percent_bounds
from celo_bench.data.sources import RECIPES, VOCAB_SIZE, missing_message
from celo_bench.errors import DataMissingError, SpecError
from celo_bench.task import Dataset

PAD_ID = 0
DEFAULT_MAX_SEQ_LEN = 32
"""The paper's LM tasks use sequence lengths 8 and 32; the cache keeps 33 tokens by default."""


class Tokenizer(Protocol):
    def encode(self, texts: Sequence[str]) -> list[list[int]]: ...


class SentencePieceTokenizer:
    """A sentencepiece model file (T5's ``spiece.model``); needs the ``paper`` extra."""

    def __init__(self, path: Path):
        try:
            import sentencepiece as spm
        except ImportError:
            raise DataMissingError(
                "tokenising needs sentencepiece: pip install 'celo-bench[paper]'"
            ) from None
        self.sp = spm.SentencePieceProcessor(model_file=str(path))
        self.threads = os.cpu_count() or 1

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return self.sp.encode(list(texts), out_type=int, num_threads=self.threads)


_LAST_SPACE = re.compile(r"\s\S*$")


def _prefix(text: str, chars: int) -> str:
    """`text` cut to at most `chars` characters at a whitespace boundary.

    sentencepiece splits on whitespace before segmenting, so the tokens of the
    complete words kept are identical to those of the full text.
    """
    if len(text) <= chars:
        return text
    cut = text[:chars]
    m = _LAST_SPACE.search(cut)
    return cut[: m.start()] if m and m.start() > 0 else cut


def crop_or_pad(ids: Sequence[Sequence[int]], length: int, dtype=np.uint16) -> np.ndarray:
    """Rows of token ids -> (N, length) array: first `length` ids, right-padded with 0."""
    out = np.full((len(ids), length), PAD_ID, dtype=dtype)
    for i, row in enumerate(ids):
        row = row[:length]
        out[i, : len(row)] = row
    return out


def tokenize_batches(batches: Iterable[Sequence[str]], tokenizer: Tokenizer, length: int,
                     on_batch=None) -> np.ndarray:
    """Tokenise text batches into one (N, length) uint16 array, in order.

    Long texts (Wikipedia articles) are tokenised from a prefix of ``32 * length``
    characters; a text whose prefix gives fewer than `length` tokens is tokenised whole.
    """
    chars = 32 * length
    parts = []
    for texts in batches:
        cut = [_prefix(t or "", chars) for t in texts]
        ids = tokenizer.encode(cut)
        redo = [i for i, (c, t, r) in enumerate(zip(cut, texts, ids, strict=True))
                if len(r) < length and len(c) < len(t or "")]
        if redo:
            for i, r in zip(redo, tokenizer.encode([texts[i] for i in redo]), strict=True):
                ids[i] = r
        parts.append(crop_or_pad(ids, length))
        if on_batch:
            on_batch(len(texts))
    return np.concatenate(parts) if parts else np.zeros((0, length), np.uint16)


def lm_facts(name: str, seq_len: int = DEFAULT_MAX_SEQ_LEN) -> dict[str, Any]:
    if not isinstance(seq_len, int) or seq_len < 1:
        raise SpecError("[data]", "seq_len", f"expected a positive int, got {seq_len!r}")
    return {"vocab_size": VOCAB_SIZE, "seq_len": seq_len, "pad_id": PAD_ID}


def load_lm_dataset(name: str, seq_len: int = DEFAULT_MAX_SEQ_LEN,
                    root: str | os.PathLike | None = None) -> Dataset:
    """Load LM dataset `name` from the cache: int32 ``tokens`` of shape (N, seq_len + 1)."""
    info = lm_facts(name, seq_len)
    manifest = cache.read_manifest(name, root)
    if manifest is None:
        raise DataMissingError(missing_message(name, root))
    stored = int(manifest["max_seq_len"])
    if seq_len > stored:
        raise DataMissingError(
            f"dataset '{name}' is cached with sequences of {stored} tokens, the task needs "
            f"{seq_len}: run `celo-bench data prepare {name} --max-seq-len {seq_len} --force`"
        )
    source_splits = sorted({s for s, _, _ in RECIPES[name].lm_splits.values()})
    arrays = cache.load_arrays(name, tuple(f"{s}_tokens" for s in source_splits), root, mmap=True)
    n = {s: len(arrays[f"{s}_tokens"]) for s in source_splits}
    orders = {s: np.random.default_rng(0).permutation(n[s]) if s == "train" else np.arange(n[s])
              for s in source_splits}
    splits = {}
    for split, (src, lo, hi) in RECIPES[name].lm_splits.items():
        a, b = percent_bounds(n[src], lo, hi)
        idx = orders[src][a:b]
        splits[split] = {"tokens": np.asarray(arrays[f"{src}_tokens"][idx, : seq_len + 1], np.int32)}
    where = f"cache {cache.dataset_dir(name, root)}"
    return Dataset(name=name, splits=splits, info={**info, "source": where})


def make_loader(name: str):
    def loader(seq_len: int = DEFAULT_MAX_SEQ_LEN) -> Dataset:
        return load_lm_dataset(name, seq_len=seq_len)

    loader.__doc__ = f"Load '{name}' (option: seq_len)."
    return loader


def make_facts(name: str):
    def facts(seq_len: int = DEFAULT_MAX_SEQ_LEN):
        return lm_facts(name, seq_len)

    return facts
