"""Readers of datasets' original published formats: IDX, the CIFAR binary archives, parquet.

Hand-written for IDX and CIFAR because both formats are a few lines of fixed-layout
bytes (documented by their authors) and every library that reads them also pulls in a
framework; parquet goes through pyarrow. Nothing here unpickles anything.

- IDX (MNIST, Fashion-MNIST; http://yann.lecun.com/exdb/mnist/): two zero bytes, a type
  code (0x08 = uint8), the number of dimensions ``d``, ``d`` big-endian uint32 sizes,
  then the data in C order. Files may be gzip-compressed (detected by magic bytes).
- CIFAR binary (https://www.cs.toronto.edu/~kriz/cifar.html): fixed-size records of
  ``label bytes + 3072`` bytes; the image is 1024 red, 1024 green, 1024 blue values,
  each a 32x32 row-major plane. CIFAR-10 has one label byte; CIFAR-100 two
  (coarse, then fine).
"""

from __future__ import annotations

import fnmatch
import gzip
import io
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from celo_bench.data.cache import DataCorruptError

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_maybe_gzip(path: Path) -> bytes:
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, gzip.BadGzipFile) as e:
            raise DataCorruptError(f"{path}: damaged or truncated gzip file ({e})") from None
    return raw


def parse_idx(data: bytes, what: str = "IDX data") -> np.ndarray:
    """Decode the bytes of one (uncompressed) IDX file into an array of its declared shape."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DataCorruptError(f"{what}: not an IDX file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataCorruptError(f"{what}: truncated IDX header")
    shape = tuple(int(x) for x in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataCorruptError(
            f"{what}: truncated or padded IDX file: header declares shape {shape} "
            f"({expected} bytes of data), found {len(data) - header}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("=")) if dtype.byteorder == ">" else arr.copy()


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or not)."""
    return parse_idx(_read_maybe_gzip(path), str(path))


def parse_cifar_records(data: bytes, label_bytes: int, what: str = "CIFAR data") -> tuple[np.ndarray, np.ndarray]:
    """Records -> (images uint8 (N, 32, 32, 3), labels uint8 (N, label_bytes))."""
    rec = label_bytes + 3072
    if len(data) == 0 or len(data) % rec:
        raise DataCorruptError(
            f"{what}: {len(data)} bytes is not a whole number of {rec}-byte CIFAR records "
            "(truncated file?)"
        )
    table = np.frombuffer(data, dtype=np.uint8).reshape(-1, rec)
    images = table[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), table[:, :label_bytes].copy()


def _cifar_member_bytes(source: Path, names: Sequence[str]) -> dict[str, bytes]:
    """Bytes of the named ``.bin`` members, from a ``.tar.gz`` archive or an extracted folder."""
    out: dict[str, bytes] = {}
    if source.is_dir():
        for n in names:
            hits = sorted(source.rglob(n))
            if hits:
                out[n] = hits[0].read_bytes()
    else:
        try:
            with tarfile.open(source, "r:*") as tar:
                for m in tar:
                    base = m.name.rsplit("/", 1)[-1]
                    if m.isfile() and base in names and base not in out:
                        out[base] = tar.extractfile(m).read()  # read in memory, never extracted
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DataCorruptError(f"{source}: damaged or truncated archive ({e})") from None
    missing = [n for n in names if n not in out]
    if missing:
        raise DataCorruptError(f"{source}: missing CIFAR members {missing}")
    return out


def read_cifar(source: Path, train_files: Sequence[str], test_files: Sequence[str],
               label_bytes: int, label_index: int) -> dict[str, np.ndarray]:
    """CIFAR binary -> ``{train_image, train_label, test_image, test_label}`` (labels int32).

    `label_index` picks the label byte (CIFAR-100: 1 = fine label, as TFDS's ``label``).
    """
    blobs = _cifar_member_bytes(Path(source), [*train_files, *test_files])
    out: dict[str, np.ndarray] = {}
    for split, files in (("train", train_files), ("test", test_files)):
        parts = [parse_cifar_records(blobs[f], label_bytes, f"{source}:{f}") for f in files]
        out[f"{split}_image"] = np.concatenate([p[0] for p in parts])
        out[f"{split}_label"] = np.concatenate([p[1][:, label_index] for p in parts]).astype(np.int32)
    return out


def decode_image(value: object) -> np.ndarray:
    """An encoded image (HF ``Image`` feature: ``{"bytes": png, ...}`` or raw bytes) -> HWC uint8."""
    from PIL import Image  # pillow comes with matplotlib

    blob = value.get("bytes") if isinstance(value, dict) else value
    if not isinstance(blob, bytes | bytearray):
        raise DataCorruptError(f"expected encoded image bytes, got {type(blob).__name__}")
    arr = np.asarray(Image.open(io.BytesIO(blob)))
    return arr[..., None] if arr.ndim == 2 else arr


def read_parquet_images(files: Sequence[Path], image_col: str, label_col: str) -> tuple[np.ndarray, np.ndarray]:
    """Image-classification parquet shards (HF hub layout) -> (uint8 NHWC images, int32 labels)."""
    import pyarrow.parquet as pq  # heavy: only preparing hub parquet needs it

    images, labels = [], []
    for f in files:
        try:
            table = pq.read_table(f, columns=[image_col, label_col])
        except Exception as e:  # pyarrow raises several types for damaged files
            raise DataCorruptError(f"{f}: cannot read parquet ({e})") from None
        images += [decode_image(v) for v in table.column(image_col).to_pylist()]
        labels.append(np.asarray(table.column(label_col).to_numpy(), dtype=np.int32))
    return np.stack(images).astype(np.uint8), np.concatenate(labels)


def parquet_rows(files: Sequence[Path]) -> int:
    import pyarrow.parquet as pq  # heavy: only preparing hub parquet needs it

    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def iter_parquet_text(files: Sequence[Path], column: str, batch_rows: int = 8192) -> Iterator[list[str]]:
    """Batches of strings from one column of parquet shards, in file order."""
    import pyarrow.parquet as pq  # heavy: only preparing hub parquet needs it

    for f in files:
        try:
            pf = pq.ParquetFile(f)
            for batch in pf.iter_batches(batch_size=batch_rows, columns=[column]):
                yield batch.column(0).to_pylist()
        except OSError as e:
            raise DataCorruptError(f"{f}: cannot read parquet ({e})") from None


def iter_text_lines(files: Sequence[Path], batch_rows: int = 8192) -> Iterator[list[str]]:
    """Batches of lines (UTF-8, newline stripped) from plain-text files, in file order."""
    buf: list[str] = []
    for f in files:
        with open(f, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                buf.append(line.rstrip("\n"))
                if len(buf) == batch_rows:
                    yield buf
                    buf = []
    if buf:
        yield buf


def glob_files(folder: Path, pattern: str) -> list[Path]:
    """Files under `folder` whose path relative to it matches `pattern` (fnmatch), sorted."""
    folder = Path(folder)
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and fnmatch.fnmatch(p.relative_to(folder).as_posix(), pattern)
    )
