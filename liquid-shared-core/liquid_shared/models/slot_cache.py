"""Attention caches for a running batch that rows join and leave: buffers with spare rows and columns.

transformers' ``DynamicLayer`` keeps a layer's keys and values as tensors of exactly the live size,
so every decode step concatenates (a copy of the whole cache, every layer, every step), a row that
leaves is an index-select of the whole cache, and a row that joins is a pad and a concatenation of
the whole cache. At 16 rows these copies cost a few per cent of the decode loop; they grow with
rows x columns, so they are what made batches larger than 16 rows a loss on a CPU
(docs/benchmarks.md, "The running batch: our slot cache against transformers' DynamicLayer").

A ``SlotLayer`` holds the keys and values of every row in a buffer ``[row capacity, heads,
column capacity, head dim]``. Every row is right-aligned at the same end column, as in a
left-padded batch, and the model sees a *view* of the live window (``rows[:n]``, columns
``[start, end)``):

* a decode step writes one column in place (no copy of the cache);
* a leaving row is replaced by the last row (one row's window is copied), and the running batch
  reorders its per-row state the same way (``compaction_order``);
* a joining row is written into the next free slot, right-aligned at the end column;
* columns that became padding for every row are dropped by moving ``start`` (no copy).

When the spare room runs out, the window moves inside the same buffers if they are large enough,
else into new, larger ones (geometric growth, so the cost per step stays constant). New buffers are
not cleared; ``append`` clears the padding columns it makes visible, so every value inside the
window was written: the attention mask hides padding, and finite values keep the masked products
exact (a zero weight times a finite value).

``SlotLayer`` subclasses ``DynamicLayer`` so that transformers' masks, ``get_seq_length`` and
everything that reads ``layer.keys`` (a view of the window) work unchanged.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer

MIN_COLUMNS = 256  # spare columns of a new buffer: a few hundred decode steps before the next copy
ROW_ALIGN = 8
LEFT_SLACK = 32  # columns left free before the window when it is moved: a longer newcomer fits without a move


def _round_up(n: int, to: int) -> int:
    return -(-n // to) * to


def _empty(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """A new buffer, not cleared: untouched pages cost nothing, and only the window is ever read
    (every column of it is written before it is seen: ``append`` clears the padding it exposes)."""
    return like.new_empty(shape)


class SlotLayer(DynamicLayer):
    """One attention layer's keys and values for a running batch (see the module docstring)."""

    @torch.inference_mode()
    def __init__(self, keys: torch.Tensor, values: torch.Tensor, *, spare_rows: int = 0, spare_columns: int | None = None):
        super().__init__()
        rows, heads, width, dim = keys.shape
        self.device = keys.device
        self.is_initialized = True
        self.rows, self.start, self.end = 0, 0, 0
        self._kbuf = self._vbuf = keys.new_zeros((0, heads, 0, dim))
        spare_columns = MIN_COLUMNS if spare_columns is None else spare_columns
        self._relayout(max(rows + spare_rows, 1), max(width, 1) + spare_columns, width)
        self._kbuf[:rows, :, self.end - width:self.end] = keys
        self._vbuf[:rows, :, self.end - width:self.end] = values
        self.rows, self.start = rows, self.end - width
        self._view()

    @classmethod
    def of(cls, layer: DynamicLayer, spare_rows: int = 0) -> SlotLayer:
        """A slot layer holding a copy of ``layer``'s keys and values."""
        return cls(layer.keys, layer.values, spare_rows=spare_rows)

    # ----------------------------------------------------------------- geometry
    @property
    def row_capacity(self) -> int:
        return self._kbuf.shape[0]

    @property
    def column_capacity(self) -> int:
        return self._kbuf.shape[2]

    @property
    def width(self) -> int:
        return self.end - self.start

    def _view(self) -> None:
        self.keys = self._kbuf[:self.rows, :, self.start:self.end]
        self.values = self._vbuf[:self.rows, :, self.start:self.end]

    @torch.inference_mode()
    def _relayout(self, row_capacity: int, column_capacity: int, end: int) -> None:
        """Copy the live window into new buffers, the window ending at column ``end``."""
        width = self.width
        if not width <= end <= column_capacity or row_capacity < self.rows:
            raise ValueError(f"slot layout: window of {width} columns cannot end at {end} of {column_capacity}")
        heads, dim = self._kbuf.shape[1], self._kbuf.shape[3]
        kbuf = _empty((row_capacity, heads, column_capacity, dim), self._kbuf)
        vbuf = _empty((row_capacity, heads, column_capacity, dim), self._vbuf)
        if self.rows and width:
            kbuf[:self.rows, :, end - width:end] = self._kbuf[:self.rows, :, self.start:self.end]
            vbuf[:self.rows, :, end - width:end] = self._vbuf[:self.rows, :, self.start:self.end]
        self._kbuf, self._vbuf = kbuf, vbuf
        self.start, self.end = end - width, end

    def _make_room(self, rows: int, left: int, right: int) -> None:
        """Ensure ``rows`` row slots, ``left`` columns before ``end`` and ``right`` after it. The
        window moves inside the buffer it has when that is large enough (a copy of the window, no
        new memory: fresh pages cost a page fault each), else into a new, larger buffer."""
        if rows <= self.row_capacity and left <= self.end and self.end + right <= self.column_capacity:
            return
        end = max(left, self.width) + LEFT_SLACK  # some room for longer newcomers
        columns = end + max(right, self.width // 2, MIN_COLUMNS)  # room for many steps before the next move
        if rows <= self.row_capacity and columns <= self.column_capacity:
            self._shift(end)
            return
        row_capacity = self.row_capacity if rows <= self.row_capacity else _round_up(max(rows, self.row_capacity * 3 // 2), ROW_ALIGN)
        self._relayout(row_capacity, max(columns, self.column_capacity), end)

    @torch.inference_mode()
    def _shift(self, end: int) -> None:
        """Move the live window to end at column ``end`` of the same buffers."""
        width, start = self.width, end - self.width
        d = start - self.start
        if d == 0:
            return
        src, n = self.start, self.rows
        for buf in (self._kbuf, self._vbuf):
            if abs(d) >= width:  # no overlap
                buf[:n, :, start:end] = buf[:n, :, src:src + width]
            elif abs(d) * 8 < width:  # a short move: through a copy of the window
                buf[:n, :, start:end] = buf[:n, :, src:src + width].clone()
            else:  # pieces of |d| columns, in the order that never overwrites what is still to be read
                pieces = range(0, width, abs(d)) if d < 0 else reversed(range(0, width, abs(d)))
                for c in pieces:
                    m = min(abs(d), width - c)
                    buf[:n, :, start + c:start + c + m] = buf[:n, :, src + c:src + c + m]
        self.start, self.end = start, end
        self._view()

    # --------------------------------------------------------- transformers API
    @torch.inference_mode()
    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new columns of every row at the end of the window (in place); return the window."""
        if key_states.shape[0] != self.rows:
            raise ValueError(f"slot layer holds {self.rows} rows, the forward pass has {key_states.shape[0]}")
        q = key_states.shape[-2]
        self._make_room(self.rows, 0, q)
        self._kbuf[:self.rows, :, self.end:self.end + q] = key_states
        self._vbuf[:self.rows, :, self.end:self.end + q] = value_states
        self.end += q
        self._view()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.width

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.keep_rows(indices.tolist())

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.keep_rows(beam_idx.tolist())

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("a slot layer is not cropped; its rows leave with keep_rows")

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("a slot layer does not repeat rows")

    # ------------------------------------------------------------ the batch API
    @torch.inference_mode()
    def keep_rows(self, order: list[int]) -> None:
        """Row ``j`` becomes old row ``order[j]``. Cheap when ``order`` is a ``compaction_order``
        (only rows that move are copied); any other order costs one copy of the kept rows."""
        moved = [(j, i) for j, i in enumerate(order) if i != j]
        if moved and any(i < len(order) for _, i in moved):  # not a compaction: sources may be overwritten
            index = torch.tensor(order, device=self._kbuf.device)
            self._kbuf[:len(order)] = self._kbuf[index]
            self._vbuf[:len(order)] = self._vbuf[index]
        else:
            s, e = self.start, self.end
            for j, i in moved:
                self._kbuf[j, :, s:e] = self._kbuf[i, :, s:e]
                self._vbuf[j, :, s:e] = self._vbuf[i, :, s:e]
        self.rows = len(order)
        self._view()

    def trim_left(self, columns: int) -> None:
        """Drop the first ``columns`` columns of the window (padding of every row)."""
        self.start = min(self.start + columns, self.end)
        self._view()

    @torch.inference_mode()
    def append(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Add rows, right-aligned at the end column; the window grows left when they are longer.
        Padding that becomes visible (the newcomers' left of a wider window, or the running rows'
        columns the window grew by) is cleared, so every value the attention sees is finite."""
        n, width = keys.shape[0], keys.shape[2]
        self._make_room(self.rows + n, width, 0)
        old_rows, old_start, end = self.rows, self.start, self.end
        start = min(old_start, end - width)
        for buf, new in ((self._kbuf, keys), (self._vbuf, values)):
            buf[old_rows:old_rows + n, :, end - width:end] = new
            buf[old_rows:old_rows + n, :, start:end - width] = 0
            buf[:old_rows, :, start:old_start] = 0
        self.rows, self.start = old_rows + n, start
        self._view()


def compaction_order(keep: list[int]) -> list[int]:
    """The order that keeps the rows ``keep`` (ascending) of a batch by moving as few as possible:
    each row that leaves is replaced by a kept row from the end of the batch."""
    n = len(keep)
    kept = set(keep)
    movers = [i for i in keep if i >= n]
    order = list(range(n))
    for j in range(n):
        if j not in kept:
            order[j] = movers.pop()
    return order
