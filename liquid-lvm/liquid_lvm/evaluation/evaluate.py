"""Judge a predictor on one split: per-query scores over the whole bank, rollout, decoding.

A predictor is any ``predict(context [B, T, D], mask [B, T]) -> [B, D]`` on NumPy arrays (the
baselines, or ``ModelPredictor`` around a trained model). Per query (= window of the split):

* ``cosine`` to the true next vector;
* ``rank`` of the true next chunk among every chunk of the split (``Bank``), ``recall@1/5/10``,
  ``rr`` (reciprocal rank; its mean is MRR) and ``contrastive_acc`` (LCM, arXiv 2412.08821);
* ``directional``: 1 if the prediction is closer (cosine) to the next chunk than to the last
  context chunk;
* rollout: predictions fed back as context, step j = 1..k scored against chunk ``s+T+j-1``, on
  the windows whose document has those chunks (``step`` column).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from liquid_lvm.data.corpus import ChunkCorpus
from liquid_lvm.evaluation.retrieval import Bank

RECALL_KS = (1, 5, 10)
QUERY_METRICS = ("recall@1", "recall@5", "recall@10", "rr", "contrastive_acc", "cosine", "directional")


class ModelPredictor:
    """A torch model as a NumPy predictor (eval mode, no grad, batched)."""

    def __init__(self, model: torch.nn.Module, batch_size: int = 512, device: str = "cpu"):
        self.model = model.eval().to(device)
        self.batch_size, self.device = batch_size, device

    @torch.no_grad()
    def __call__(self, context: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = []
        for lo in range(0, len(context), self.batch_size):
            c = torch.from_numpy(np.ascontiguousarray(context[lo:lo + self.batch_size], dtype=np.float32))
            m = torch.from_numpy(mask[lo:lo + self.batch_size])
            out.append(self.model(c.to(self.device), m.to(self.device)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, context.shape[-1]), dtype=np.float32)


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("nd,nd->n", a, b) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


@dataclass
class SplitEvaluation:
    per_query: pd.DataFrame   # one row per (window, step)
    decoded: pd.DataFrame     # a few examples: context end, truth and nearest-chunk text of the prediction

    def summary(self, step: int = 1) -> dict[str, float]:
        rows = self.per_query[self.per_query["step"] == step]
        out = {m: float(rows[m].mean()) for m in QUERY_METRICS}
        out["mrr"] = out.pop("rr")
        out["n_queries"] = float(len(rows))
        return out


def window_arrays(corpus: ChunkCorpus, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    starts = corpus.windows[split]
    idx = starts[:, None] + np.arange(corpus.context)[None, :]
    return corpus.vectors[idx], np.ones(idx.shape, dtype=bool), starts + corpus.context


def evaluate_predictor(predictor, corpus: ChunkCorpus, split: str = "test", rollout: int = 1,
                       n_examples: int = 5, seed: int = 0) -> SplitEvaluation:
    """Score ``predictor`` on the windows of ``split`` against the bank of all that split's chunks."""
    if rollout < 1:
        raise ValueError(f"rollout must be >= 1, got {rollout}")
    if split not in corpus.windows or corpus.windows[split].size == 0:
        raise ValueError(f"split {split!r} has no windows of context {corpus.context} to evaluate")
    bank_rows = corpus.rows(split)
    bank = Bank(corpus.vectors[bank_rows])
    pos_of_row = np.full(len(corpus.vectors), -1, dtype=np.int64)
    pos_of_row[bank_rows] = np.arange(len(bank_rows))
    doc_end = corpus.offsets[1:][corpus.doc_of_row()]  # first row after each row's document
    context, mask, target_rows = window_arrays(corpus, split)
    starts = corpus.windows[split]
    frames, decoded = [], None
    for step in range(1, rollout + 1):
        rows = target_rows + step - 1
        keep = rows < doc_end[target_rows]  # the document still has this chunk
        pred = predictor(context, mask)
        if pred.shape != (len(context), corpus.dim):
            raise ValueError(f"predictor returned shape {pred.shape}, expected {(len(context), corpus.dim)}")
        pr, rw = pred[keep], rows[keep]
        ranks = bank.ranks(pr, pos_of_row[rw])
        truth = corpus.vectors[rw]
        frame = pd.DataFrame({"query": [f"{corpus.doc_ids[d]}#{s}" for d, s in
                                        zip(corpus.doc_of_row()[starts[keep]], starts[keep], strict=True)],
                              "step": step, "target_row": rw, "rank": ranks.rank,
                              **{f"recall@{k}": ranks.recall(k) for k in RECALL_KS}, "rr": ranks.reciprocal_rank(),
                              "contrastive_acc": ranks.contrastive_accuracy(), "cosine": _cos(pr, truth),
                              "directional": (_cos(pr, truth) > _cos(pr, context[keep, -1])).astype(float)})
        frames.append(frame)
        if step == 1:
            pick = np.random.default_rng(seed).choice(len(pr), size=min(n_examples, len(pr)), replace=False)
            decoded = pd.DataFrame({
                "query": frame["query"].to_numpy()[pick],
                "last_context": [corpus.texts[r - 1] for r in rw[pick]],
                "truth": [corpus.texts[r] for r in rw[pick]],
                "nearest_to_prediction": [corpus.texts[bank_rows[ranks.top[i, 0]]] for i in pick],
                "rank_of_truth": ranks.rank[pick]})
        context = np.concatenate([context[:, 1:], pred[:, None, :].astype(np.float32)], axis=1)
    return SplitEvaluation(pd.concat(frames, ignore_index=True), decoded)


def coherence_diagnostics(corpus: ChunkCorpus, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per split: mean cosine of consecutive chunks vs random pairs of chunks from different
    documents, and the narrative delta cos(p_t, p_{t+1}) - cos(p_t, p_{t-1}) (0 = symmetric)."""
    rng = np.random.default_rng(seed)
    doc = corpus.doc_of_row()
    out = {}
    for split in corpus.splits:
        rows = corpus.rows(split)
        if rows.size < 3:
            continue
        inner = rows[(rows + 1 < len(doc))]
        inner = inner[doc[inner] == doc[np.minimum(inner + 1, len(doc) - 1)]]
        consecutive = _cos(corpus.vectors[inner], corpus.vectors[inner + 1]) if inner.size else np.zeros(0)
        a, b = rng.choice(rows, 4096), rng.choice(rows, 4096)
        other = doc[a] != doc[b]
        random_pairs = _cos(corpus.vectors[a[other]], corpus.vectors[b[other]])
        mid = inner[(inner - 1 >= 0)]
        mid = mid[doc[mid - 1] == doc[mid]]
        delta = (_cos(corpus.vectors[mid], corpus.vectors[mid + 1]) - _cos(corpus.vectors[mid], corpus.vectors[mid - 1]))
        out[split] = {"consecutive_cosine": float(consecutive.mean()) if consecutive.size else float("nan"),
                      "random_pair_cosine": float(random_pairs.mean()) if random_pairs.size else float("nan"),
                      "narrative_delta": float(delta.mean()) if delta.size else float("nan"),
                      "n_consecutive": float(consecutive.size)}
    return out
