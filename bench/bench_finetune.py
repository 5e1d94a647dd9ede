"""Fine-tuning cost: LoRA (liquid_finetune) versus full fine-tuning, same trainer, same data, one run.

    python bench/bench_finetune.py                    # SmolLM2-135M, 5 steps each, batch 4
    python bench/bench_finetune.py --steps 10 --out /tmp/ftbench

Both arms are TRL's SFTTrainer on the same tokenised conversations with the same assistant-only
mask, seed and batch; *LoRA* trains the adapter of ``liquid_finetune`` (r 8, attention
projections), *full* trains every weight (no PEFT). Each arm runs in its own process, so peak RSS
(``ru_maxrss``) is that arm's own. The conversations are built from the shared Wikipedia articles
(a paragraph as context, its first sentence as the answer): only their lengths matter here, no
quality is measured. Prints a markdown table; writes ``bench_finetune.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _conversations(articles: Path, n: int) -> list:
    rows = []
    with articles.open(encoding="utf-8") as handle:
        for line in handle:
            for paragraph in json.loads(line)["paragraphs"]:
                text = paragraph["text"].strip()
                if 400 < len(text) < 900 and ". " in text:
                    rows.append([{"role": "system", "content": "Answer the question from the given context. Be brief."},
                                 {"role": "user", "content": f"Context:\n{text}\n\nQuestion: How does the passage begin?"},
                                 {"role": "assistant", "content": text.split(". ")[0] + "."}])
                if len(rows) >= n:
                    return rows
    return rows


def arm(kind: str, data: Path, out: Path, steps: int, batch: int) -> dict:
    import torch
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from liquid_finetune import FinetuneConfig, read_chat_jsonl
    from liquid_finetune.trainer import load_base, tokenized_dataset

    torch.manual_seed(0)
    config = FinetuneConfig(data=data, output_dir=out, track=False, progress=False)
    model, tokenizer, _ = load_base(config)
    dataset = tokenized_dataset(tokenizer, read_chat_jsonl(data), "benchmark")
    peft_config = None
    if kind == "lora":
        from peft import LoraConfig

        from liquid_finetune.targets import lora_targets

        peft_config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=lora_targets(model),
                                 task_type="CAUSAL_LM")
    args = SFTConfig(output_dir=str(out / kind), max_steps=steps, per_device_train_batch_size=batch,
                     learning_rate=2e-4, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
                     disable_tqdm=True, seed=0, max_length=1024)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config)
    trainer.remove_callback(PrinterCallback)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    start, cpu0 = time.perf_counter(), time.process_time()
    trainer.train()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    return {"arm": kind, "steps": steps, "batch": batch, "wall_s": wall, "cpu_s": cpu, "s_per_step": wall / steps,
            "trainable_params": trainable, "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "loss_first": trainer.state.log_history[0].get("loss"), "loss_last": trainer.state.log_history[-2].get("loss")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_finetune"))
    parser.add_argument("--articles", type=Path, default=Path(os.environ.get("LIQUID_DATA_DIR", REPO.parent / "shared" / "data"))
                        / "wikipedia" / "articles.jsonl")
    parser.add_argument("--arm", choices=["lora", "full"], help="Run one arm only, in this process.")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "train.jsonl"
    if args.arm:
        if not data.is_file():
            from liquid_finetune import write_chat_jsonl

            write_chat_jsonl(data, _conversations(args.articles, args.steps * args.batch))
        row = arm(args.arm, data, args.out, args.steps, args.batch)
        (args.out / f"{args.arm}.json").write_text(json.dumps(row, indent=2))  # survives a killed parent
        print(json.dumps(row))
        return
    from liquid_finetune import write_chat_jsonl

    write_chat_jsonl(data, _conversations(args.articles, args.steps * args.batch))
    rows = []
    for kind in ("lora", "full"):
        proc = subprocess.run([sys.executable, __file__, "--arm", kind, "--steps", str(args.steps), "--batch",
                               str(args.batch), "--out", str(args.out)], capture_output=True, text=True, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    (args.out / "bench_finetune.json").write_text(json.dumps(rows, indent=2))
    print("| arm | trainable params | s/step (wall) | CPU s/step | peak RSS GiB | loss first → last |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['arm']} | {r['trainable_params']:,} | {r['s_per_step']:.1f} | {r['cpu_s'] / r['steps']:.1f} | "
              f"{r['peak_rss_gib']:.2f} | {r['loss_first']:.3f} → {r['loss_last']:.3f} |")
    lora, full = rows
    print(f"\nfull / LoRA: {full['s_per_step'] / lora['s_per_step']:.2f}x wall per step, "
          f"{full['peak_rss_gib'] / lora['peak_rss_gib']:.2f}x peak RSS")


if __name__ == "__main__":
    main()
