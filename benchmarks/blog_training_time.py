"""Time a few hundred training steps of the full blog model and extrapolate the full experiment.

    python benchmarks/blog_training_time.py [--steps 200] [--device cpu] [--threads 2]

Prints the median step time (over blocks of 20 steps, after a warm-up), and the projected wall
time of `induct reproduce blog` (20k steps × 3 seeds) without evaluation; evaluation every 100
steps adds the measured evaluation time × 200 per seed.
"""

import argparse
import statistics
import time

import torch

from induction_toolkit.reproduce.blog import FULL
from induction_toolkit.tasks import make_task
from induction_toolkit.training.evaluate import Evaluator
from induction_toolkit.training.loop import build_run_model, make_optimizer
from induction_toolkit.training.step import get_loss_fn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    task = make_task("copying", d_vocab=64, seq_len=64)
    model = build_run_model(FULL, task, args.device)
    opt = make_optimizer(model, FULL)
    loss_fn = get_loss_fn(FULL.loss_fn)
    g = torch.Generator().manual_seed(0)
    blocks, block = [], 20

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    for i in range(args.steps + block):
        if i % block == 0:
            sync()
            t0 = time.perf_counter()
        loss = loss_fn(model, task.sample(FULL.batch_size, g).to(args.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i % block == block - 1:
            sync()
            if i >= block:  # first block is warm-up
                blocks.append((time.perf_counter() - t0) / block)
    step_s = statistics.median(blocks)
    evaluator = Evaluator(model, task, eval_batch=FULL.eval_batch, score_batch=FULL.score_batch)
    t0 = time.perf_counter()
    for _ in range(3):
        evaluator(model)
    eval_s = (time.perf_counter() - t0) / 3
    per_seed = FULL.steps * step_s + FULL.steps / FULL.eval_every * eval_s
    print(f"device {args.device}, {args.threads} threads: {step_s * 1000:.1f} ms/step (median of "
          f"{len(blocks)} blocks of {block}), evaluation {eval_s * 1000:.0f} ms")
    print(f"full blog run: {per_seed / 3600:.2f} h per seed, {3 * per_seed / 3600:.2f} h for 3 seeds")


if __name__ == "__main__":
    main()
