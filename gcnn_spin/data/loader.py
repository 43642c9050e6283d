"""Training/evaluation batches from a Zarr store: chunk-aligned block reads, windowed shuffle, prefetch thread.

One epoch is planned up front from ``(seed, epoch)`` alone, so the same seed and epoch give the same batches
and the same rotation angles:

1. the usable rows (``ok``, optionally a ``rows=`` subset) are grouped into *blocks* of ``block_images``
   consecutive store rows (a whole number of chunks, so a block is read with one chunk-aligned request);
2. with ``shuffle``, the block order is permuted, then the rows inside each *window* of ``window_blocks``
   consecutive (permuted) blocks are permuted; batches are consecutive slices of that order.

Shuffle quality vs read cost: an image's batch-mates come from its window (``window_blocks * block_images``
images, 1,024 by default) or the next one; windows are drawn afresh each epoch. Bigger windows mix better but
hold more decoded blocks in memory (two windows, ~320 MB at ``S = 160``); smaller blocks mix better but cost
more read requests (zarr has ~0.3 ms overhead per chunk request). Stores are sorted by ``dr8_id``, i.e. by sky
position, so neighbouring rows share their sky's class mix (galaxy groups, survey stripes). Blocks of one chunk
(32 images) drawn 32 to a window keep batches representative: on a simulated 36k-row train store sorted by
``dr8_id`` with clustered classes, the per-batch class-fraction std is within 1.07x of a global shuffle's
(256-image blocks, 4 per window: up to 1.4x); ``bench/bench_shuffle.py`` measures it, BENCHMARKS.md has the
figures.

A background thread reads and decompresses blocks and gathers ``uint8`` batches (:class:`HostBatch`) while the
model computes; the main thread moves them to ``device`` (pinned, non-blocking on CUDA) and converts, rotates
and crops there (:mod:`gcnn_spin.data.augment`), so data stay ``uint8`` until on the device.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np
import torch

from gcnn_spin.conventions import soft_targets
from gcnn_spin.crop import MAX_SHRINK, served_sizes
from gcnn_spin.data.augment import rotate_crop
from gcnn_spin.data.store import Store, open_store

TARGET_COLUMNS = ("p_cw", "p_acw", "p_other")


class Batch(NamedTuple):
    """images ``(B, 3, S, S)`` float32 in [0, 1] and targets ``(B, 3)`` float32 (CW, ACW, Other) on the device;
    rows ``(B,)`` int64 store rows on the CPU. Targets are NaN for stores without vote fractions (survey)."""

    images: torch.Tensor
    targets: torch.Tensor
    rows: torch.Tensor


class HostBatch(NamedTuple):
    """What the prefetch thread prepares: images ``(B, 3, M, M)`` uint8, angles ``(B,)`` radians or None,
    targets ``(B, 3)`` float32, rows ``(B,)`` int64."""

    images: torch.Tensor
    angles: np.ndarray | None
    targets: np.ndarray
    rows: np.ndarray


class _Failure(NamedTuple):
    error: BaseException


_DONE = object()


def window_shuffle(rows: np.ndarray, block_images: int, window_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """Ascending store ``rows`` ``(n,)`` -> a shuffled order ``(n,)``: rows grouped by block (``row //
    block_images``), the blocks permuted, then the rows inside each window of ``window_blocks`` consecutive
    (permuted) blocks permuted."""
    block = rows // block_images
    starts = np.flatnonzero(np.r_[True, block[1:] != block[:-1]])
    groups = np.split(rows, starts[1:])
    groups = [groups[i] for i in rng.permutation(len(groups))]
    windows = [np.concatenate(groups[i:i + window_blocks]) for i in range(0, len(groups), window_blocks)]
    return np.concatenate([w[rng.permutation(len(w))] for w in windows])


class StoreLoader:
    """Iterate a store in batches: ``for batch in loader: ...``; call ``set_epoch(k)`` before each epoch.

    ``rotate=True`` gives every image its own uniform angle in [0, 2π) (training); ``False`` centre-crops only
    (evaluation, and the study's ``_nr`` runs); either in the store's image field (``store.field``). Survey
    stores (no margin) refuse ``rotate``. ``rows``: iterate
    only these store rows (each once; rows whose image is bad are skipped like everywhere else). Within a
    batch, images are grouped by block (the order inside a batch does not matter to training).
    """

    def __init__(
        self, store: Store | str | os.PathLike, batch_size: int, shuffle: bool, seed: int = 0,
        image_size: int | None = None, rotate: bool = False, device: str | torch.device = "cpu",
        drop_last: bool = False, rows: Iterable[int] | None = None, *, block_images: int = 32,
        window_blocks: int = 32, prefetch: int = 3,
    ):
        self.store = store if isinstance(store, Store) else open_store(store)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.image_size = self.store.image_size if image_size is None else int(image_size)
        # A crop a few pixels smaller than the store's S keeps the pixel scale (e.g. LeNets at 160 from a 161
        # store); anything else would change the field of view the models were designed for.
        if self.image_size not in served_sizes(self.store.image_size):
            raise ValueError(
                f"{self.store.path.name} was built for image_size {self.store.image_size}; crops of "
                f"{self.store.image_size - MAX_SHRINK}..{self.store.image_size} px can be read from it, "
                f"not {self.image_size}"
            )
        if rotate and not self.store.margin:
            raise ValueError(
                f"{self.store.path.name} is a survey store (no margin around the {self.image_size} px field): "
                "rotating it would show padding; use rotate=False (centre crop only)"
            )
        self.batch_size, self.shuffle, self.seed, self.rotate = batch_size, shuffle, seed, rotate
        self.device, self.drop_last = torch.device(device), drop_last
        chunk = self.store.chunk_images
        self.block_images = max(chunk, -(-block_images // chunk) * chunk)  # whole chunks
        self.window_blocks, self.prefetch = max(1, window_blocks), max(1, prefetch)
        self.epoch = 0
        self.rows = self._select(rows)  # (n,) usable store rows, ascending
        self.n_skipped = self._n_asked - len(self.rows)
        self._targets = self._row_targets()
        self._spans = self._block_spans()
        self._buffer: torch.Tensor | None = None

    def _select(self, rows: Iterable[int] | None) -> np.ndarray:
        n = len(self.store)
        if rows is None:
            asked = np.arange(n, dtype=np.int64)
        else:
            asked = np.unique(np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows, dtype=np.int64))
            outside = asked[(asked < 0) | (asked >= n)]
            if outside.size:
                raise IndexError(f"rows {outside[:10].tolist()} are outside {self.store.path.name} (0..{n - 1})")
        self._n_asked = len(asked)
        return asked[self.store.ok[asked]]

    def _row_targets(self) -> np.ndarray:
        """``(n, 3)`` float32 soft targets of ``self.rows`` (NaN when the store has no vote fractions)."""
        frame = self.store.rows
        if all(c in frame.columns for c in TARGET_COLUMNS):
            return soft_targets(*(frame[c].to_numpy()[self.rows] for c in TARGET_COLUMNS))
        return np.full((len(self.rows), 3), np.nan, dtype=np.float32)

    # ------------------------------------------------------------------ plan

    def set_epoch(self, epoch: int) -> None:
        """Reseed the shuffle and the angles: the same ``(seed, epoch)`` always gives the same batches."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.rows)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def plan(self) -> tuple[np.ndarray, np.ndarray | None]:
        """This epoch's row order ``(n,)`` and angles ``(n,)`` (None without rotation)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        order = self.rows
        if self.shuffle and len(order):
            order = window_shuffle(order, self.block_images, self.window_blocks, rng)
        if self.drop_last:
            order = order[: len(order) // self.batch_size * self.batch_size]
        angles = rng.uniform(0, 2 * np.pi, len(order)).astype(np.float32) if self.rotate else None
        return order, angles

    # ------------------------------------------------------------------ host side (prefetch thread)

    def _block_spans(self) -> dict[int, tuple[int, int]]:
        """Per block: the chunk-aligned store range that covers its usable rows (one read request)."""
        chunk, rows = self.store.chunk_images, self.rows
        if not len(rows):
            return {}
        block = rows // self.block_images
        firsts = np.flatnonzero(np.r_[True, block[1:] != block[:-1]])
        lasts = np.r_[firsts[1:] - 1, len(rows) - 1]
        lo = rows[firsts] // chunk * chunk
        hi = np.minimum(len(self.store), -(-(rows[lasts] + 1) // chunk) * chunk)
        return {int(b): (int(a), int(z)) for b, a, z in zip(block[firsts], lo, hi)}

    def host_batches(self) -> Iterator[HostBatch]:
        """This epoch's batches as ``uint8`` host arrays, in order (what the prefetch thread runs)."""
        order, angles = self.plan()
        blocks_of = order // self.block_images
        remaining = {int(b): int(n) for b, n in zip(*np.unique(blocks_of, return_counts=True))}
        spans = self._spans
        cache: dict[int, tuple[int, np.ndarray]] = {}
        pin = self.device.type == "cuda"
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            blocks = blocks_of[start:start + self.batch_size]
            sort = np.argsort(blocks, kind="stable")  # group by block: one contiguous copy per block
            rows, blocks = rows[sort], blocks[sort]
            images = torch.empty((len(rows),) + tuple(self.store.images.shape[1:]), dtype=torch.uint8, pin_memory=pin)
            out = images.numpy()
            cuts = np.flatnonzero(np.r_[True, blocks[1:] != blocks[:-1], True])
            for a, b in zip(cuts[:-1], cuts[1:]):
                blk = int(blocks[a])
                if blk not in cache:
                    lo, hi = spans[blk]
                    cache[blk] = (lo, self.store.read_block(lo, hi))
                lo, data = cache[blk]
                np.take(data, rows[a:b] - lo, axis=0, out=out[a:b])
                remaining[blk] -= b - a
                if not remaining[blk]:
                    del cache[blk]
            yield HostBatch(images, None if angles is None else angles[start:start + self.batch_size][sort],
                            self._targets[np.searchsorted(self.rows, rows)], rows)

    def _produce(self, out: queue.Queue, stop: threading.Event) -> None:
        def put(item) -> bool:
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            for item in self.host_batches():
                if not put(item):
                    return
            put(_DONE)
        except BaseException as err:  # handed to the consumer, which re-raises it
            put(_Failure(err))

    # ------------------------------------------------------------------ device side

    def to_device(self, host: HostBatch) -> Batch:
        """Move a host batch to the device, convert once, rotate/crop there."""
        non_blocking = self.device.type == "cuda"
        images = host.images.to(self.device, non_blocking=non_blocking)
        angles = None if host.angles is None else torch.from_numpy(host.angles).to(self.device)
        buffer = None
        if angles is not None and self.device.type == "cpu":
            if self._buffer is None or self._buffer.numel() < images.numel():
                self._buffer = torch.empty(images.numel(), dtype=torch.float32)
            buffer = self._buffer
        out = rotate_crop(images, angles, self.image_size, buffer=buffer, oversample=self.store.oversample,
                          field=self.store.field)
        targets = torch.from_numpy(host.targets).to(self.device, non_blocking=non_blocking)
        return Batch(out, targets, torch.from_numpy(host.rows))

    def __iter__(self) -> Iterator[Batch]:
        ready: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        worker = threading.Thread(target=self._produce, args=(ready, stop), daemon=True, name="store-prefetch")
        worker.start()
        try:
            while True:
                item = ready.get()
                if item is _DONE:
                    return
                if isinstance(item, _Failure):
                    raise item.error
                yield self.to_device(item)
        finally:
            stop.set()
            worker.join()
