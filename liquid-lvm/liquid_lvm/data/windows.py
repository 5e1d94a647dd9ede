"""Torch view of a prepared corpus: ``(context [T, D], mask [T], target [D], target_row)`` items."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from liquid_lvm.data.corpus import ChunkCorpus


class WindowDataset(Dataset):
    """Windows of one split; ``target_row`` is the target chunk's row in ``corpus.vectors``."""

    def __init__(self, corpus: ChunkCorpus, split: str):
        if split not in corpus.windows:
            raise KeyError(f"split {split!r} has no windows; known: {sorted(corpus.windows)}")
        self.vectors = torch.from_numpy(np.ascontiguousarray(corpus.vectors, dtype=np.float32))
        self.starts = torch.from_numpy(corpus.windows[split].astype(np.int64))
        self.context = corpus.context
        self._offsets = torch.arange(self.context)

    def __len__(self) -> int:
        return int(self.starts.numel())

    def __getitem__(self, i):
        s = int(self.starts[i])
        ctx = self.vectors[s:s + self.context]
        return ctx, torch.ones(self.context, dtype=torch.bool), self.vectors[s + self.context], s + self.context

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """All windows at once: contexts ``[N, T, D]``, masks, targets ``[N, D]``, target rows ``[N]``."""
        idx = self.starts[:, None] + self._offsets[None, :]
        rows = self.starts + self.context
        return self.vectors[idx], torch.ones(idx.shape, dtype=torch.bool), self.vectors[rows], rows
