"""Side-by-side performance ratios of induction-toolkit against TransformerLens, in one run.

    python benchmarks/run.py [--quick] [--json] [--threads N] [--only NAME ...]

Every number is a ratio (or a fraction of a peak) measured in this process, on this machine, now:
both sides of a ratio run interleaved, each repeat a fresh run, and the median over repeats is
reported. What is measured (see benchmarks/README.md for the formulas):

- train: steps/s of the toolkit's training loop with the fused forward (``loss_fn="fast"``) over
  the same loop through the HookedTransformer's own forward (``"hooked"``), attn-only-2l on
  repeated tokens; the two runs' losses (same seed, same batches) are compared too.
- blog: blog-4l on the copying task: model FLOPs utilisation of the fused forward (achieved FLOP/s
  over a large fp32 matmul's, timed here), and bf16-autocast steps/s over the hooked fp32 ones.
- grouped: G runs of attn-only-2l trained as one batched model (``training.grouped``): member
  steps/s at G = 2, 4, 8, 16 over sequential single fused runs, MFU at G = 8 beside a single run's,
  bf16 the same where bf16 matmuls are native, peak RSS at G = 8 over a single run's; on CUDA,
  member steps/s for G = 1 … 64.
- patch: exact patching of every head at every position (attn-only-4l, 32 tokens) against
  ``transformer_lens.patching.get_act_patch_attn_head_out_by_pos``: speed and max |difference|.
- attribution: attribution patching against exact patching on a freshly trained attn-only-4l:
  Spearman ρ of the per-head effects, and speed.
- help: ``induct --help`` wall time over ``python -c "import typer, rich"``.
- memory: peak RSS of ``induct score`` (default and ``--low-memory``) on a GPT-2-small-shaped model
  with random weights.

Runs on CUDA when present (and says so). Timings on a shared machine are noisy: the load average
at the start and the end is part of the output.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SECTIONS = ("peak", "train", "blog", "grouped", "patch", "attribution", "help", "memory")


def _log(msg: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False).print(f"[dim]·[/dim] {msg}")


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _median_time(fn: Callable[[], Any], repeats: int, device: str, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# --- peak matmul ------------------------------------------------------------------------------

def bench_peak(ctx: dict) -> dict:
    import torch

    device, quick = ctx["device"], ctx["quick"]
    n = 4096 if device.startswith("cuda") else 2048
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    t = _median_time(lambda: a @ b, 3 if quick else 5, device)
    peak = 2 * n ** 3 / t
    ctx["peak_flops"] = peak
    # bf16 against fp32 at a size this CPU's bf16 path finishes in seconds (it may be emulated).
    m = 2048 if device.startswith("cuda") else 512
    a32, b32 = torch.randn(m, m, device=device), torch.randn(m, m, device=device)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    t32 = _median_time(lambda: a32 @ b32, 3, device)
    t16 = _median_time(lambda: a16 @ b16, 3, device)
    ctx["bf16_matmul_speed_vs_fp32"] = bf16_speed = t32 / t16
    return {"peak_fp32_gflops": peak / 1e9, "peak_matmul_size": n,
            "bf16_matmul_speed_vs_fp32": bf16_speed, "bf16_matmul_size": m}


# --- training ---------------------------------------------------------------------------------

def _train_rate(loss_fn: str, device: str, steps: int, skip: int, **cfg: Any) -> tuple[float, list[float], Any]:
    """Median steps/s of the training loop (evaluation excluded, as the loop itself times it)."""
    import torch

    from induction_toolkit.training import TrainConfig, train

    rates, losses = [], []

    def on_step(p):
        rates.append(p.tokens_per_s)
        losses.append(p.loss)

    config = TrainConfig(**{**dict(eval_every=10 ** 9, eval_batch=8, score_batch=4,
                                   log_checkpoints=0, device=device, loss_fn=loss_fn,
                                   steps=steps), **cfg})
    with torch.random.fork_rng(devices=[]):
        result = train(config, None, progress=on_step, handle_signals=False)
    tokens_per_step = config.batch_size * result.task.seq_len
    return statistics.median(rates[skip:]) / tokens_per_step, losses, result


def bench_train(ctx: dict) -> dict:
    device, quick = ctx["device"], ctx["quick"]
    steps, repeats = (60, 3) if quick else (200, 5)
    cfg = dict(preset="attn-only-2l", task="repeated", batch_size=32, seed=0)
    ratios, hooked_rates, fast_rates, diffs = [], [], [], []
    for r in range(repeats):
        h, h_loss, _ = _train_rate("hooked", device, steps, 5, **cfg)
        f, f_loss, _ = _train_rate("fast", device, steps, 5, **cfg)
        hooked_rates.append(h)
        fast_rates.append(f)
        ratios.append(f / h)
        diffs.append(max(abs(a - b) for a, b in zip(h_loss[:50], f_loss[:50])))
        _log(f"train attn-only-2l repeat {r + 1}/{repeats}: hooked {h:.1f} steps/s, fast {f:.1f} "
             f"steps/s ({f / h:.2f}×)")
    return {"train_speedup_vs_transformerlens": statistics.median(ratios),
            "train_steps_per_s_fast": statistics.median(fast_rates),
            "train_steps_per_s_transformerlens": statistics.median(hooked_rates),
            "train_loss_max_abs_diff_50_steps": max(diffs)}


def _flops_per_step(result, batch_size: int) -> float:
    """Forward + backward FLOPs of one step (see benchmarks/README.md)."""
    model, cfg = result.model, result.model.cfg
    n_pos = result.task.seq_len
    n_block = sum(p.numel() for name, p in model.named_parameters() if name.startswith("blocks."))
    dense = n_block + cfg.d_model * cfg.d_vocab_out  # every weight a token meets, unembed included
    attention = 2 * cfg.n_layers * n_pos * cfg.d_model  # QKᵀ and AV, per token, forward
    return batch_size * n_pos * (6 * dense + 6 * attention)


def bench_blog(ctx: dict) -> dict:
    device, quick = ctx["device"], ctx["quick"]
    steps, skip, repeats = (5, 1, 3) if quick else (20, 4, 3)
    cfg = dict(preset="blog-4l", task="copying", batch_size=32, seed=0)
    rates: dict[str, list[float]] = {"hooked": [], "fast": [], "fast-bf16": []}
    # Where bf16 matmuls are emulated (≪ fp32) a bf16 step takes ~15 s on this model: in --quick
    # time it once, over 2 steps, or the quick run alone would take 4 minutes.
    short_bf16 = quick and ctx.get("bf16_matmul_speed_vs_fp32", 1.0) < 0.5
    bf16_runs = 1 if short_bf16 else repeats
    flops = None
    for r in range(repeats):
        for name in rates:
            if name == "fast-bf16" and r >= bf16_runs:
                continue
            n_steps, n_skip = (3, 1) if name == "fast-bf16" and short_bf16 else (steps, skip)
            rate, _, result = _train_rate(name, device, n_steps, n_skip, **cfg)
            rates[name].append(rate)
            flops = flops or _flops_per_step(result, cfg["batch_size"])
        _log(f"blog-4l repeat {r + 1}/{repeats}: " +
             ", ".join(f"{k} {v[-1]:.2f} steps/s" for k, v in rates.items()))
    med = {k: statistics.median(v) for k, v in rates.items()}
    bf16_ratios = [b / h for b, h in zip(rates["fast-bf16"], rates["hooked"])]
    peak = ctx["peak_flops"]
    return {"blog_bf16_runs": bf16_runs, "blog_mfu_fp32": med["fast"] * flops / peak,
            "blog_mfu_fp32_transformerlens": med["hooked"] * flops / peak,
            "blog_bf16_speedup_vs_transformerlens": statistics.median(bf16_ratios),
            "blog_fp32_speedup_vs_transformerlens": statistics.median(
                [f / h for f, h in zip(rates["fast"], rates["hooked"])]),
            "blog_steps_per_s_fast": med["fast"], "blog_steps_per_s_bf16": med["fast-bf16"],
            "blog_steps_per_s_transformerlens": med["hooked"],
            "blog_gflop_per_step": flops / 1e9}


# --- grouped training ---------------------------------------------------------------------------

_GROUPED_SIZES = (2, 4, 8, 16)
_GROUPED_RSS = ("import sys, torch; from induction_toolkit.training import TrainConfig, train; "
                "from induction_toolkit.training.grouped import train_grouped; "
                "g = int(sys.argv[1]); torch.set_num_threads(int(sys.argv[2])); "
                "cfg = dict(preset='attn-only-2l', task='repeated', steps=5, batch_size=32, "
                "eval_every=10**9, eval_batch=8, score_batch=4, log_checkpoints=0, device='cpu'); "
                "train(TrainConfig(**cfg), None, handle_signals=False) if g == 0 else "
                "train_grouped([TrainConfig(**cfg, seed=s) for s in range(g)], None, progress=False, "
                "handle_signals=False)")


def _grouped_rate(g: int, device: str, steps: int, skip: int, loss_fn: str = "fast",
                  **cfg: Any) -> tuple[float, Any]:
    """Median member-steps/s (steps/s summed over the G members) of ``train_grouped``."""
    import torch

    from induction_toolkit.training import TrainConfig
    from induction_toolkit.training.grouped import train_grouped

    rates: list[float] = []
    configs = [TrainConfig(**{**dict(eval_every=10 ** 9, eval_batch=8, score_batch=4,
                                     log_checkpoints=0, device=device, loss_fn=loss_fn,
                                     steps=steps), **cfg, "seed": s}) for s in range(g)]
    with torch.random.fork_rng(devices=[]):
        results = train_grouped(configs, None, progress=lambda p: rates.append(p.tokens_per_s),
                                handle_signals=False)
    tokens_per_step = configs[0].batch_size * results[0].task.seq_len
    return statistics.median(rates[skip:]) / tokens_per_step, results[0]


def _native_bf16(ctx: dict) -> bool:
    return ctx["device"].startswith("cuda") or ctx.get("bf16_matmul_speed_vs_fp32", 0.0) >= 1.0


def bench_grouped(ctx: dict) -> dict:
    device, quick = ctx["device"], ctx["quick"]
    steps, skip, repeats = (10, 2, 3) if quick else (40, 5, 3)
    cfg = dict(preset="attn-only-2l", task="repeated", batch_size=32)
    # --quick times bf16 at G = 8 only (the MFU point), the full run at every G
    sizes = {"fp32": _GROUPED_SIZES, "bf16": (8,) if quick else _GROUPED_SIZES}
    dtypes = ["fp32"] + (["bf16"] if _native_bf16(ctx) else [])
    if "bf16" not in dtypes:
        _log("grouped bf16: skipped, this CPU has no native bf16 matmuls "
             f"(bf16 {ctx.get('bf16_matmul_speed_vs_fp32', float('nan')):.2f}× fp32)")
    single: dict[str, list[float]] = {d: [] for d in dtypes}
    grouped: dict[str, dict[int, list[float]]] = {d: {g: [] for g in sizes[d]} for d in dtypes}
    hooked: list[float] = []
    flops = None
    for r in range(repeats):
        h, _, _ = _train_rate("hooked", device, steps, skip, **cfg, seed=0)
        hooked.append(h)
        for dtype in dtypes:
            loss_fn = "fast" if dtype == "fp32" else "fast-bf16"
            s, _, result = _train_rate(loss_fn, device, steps, skip, **cfg, seed=0)
            single[dtype].append(s)
            flops = flops or _flops_per_step(result, cfg["batch_size"])
            for g in sizes[dtype]:
                rate, _ = _grouped_rate(g, device, steps, skip, loss_fn=loss_fn, **cfg)
                grouped[dtype][g].append(rate)
            _log(f"grouped {dtype} repeat {r + 1}/{repeats}: single {s:.1f} steps/s, grouped " +
                 ", ".join(f"G={g} {v[-1]:.1f}" for g, v in grouped[dtype].items()) +
                 " member-steps/s")
    peak = ctx["peak_flops"]
    out: dict[str, Any] = {"grouped_gflop_per_member_step": flops / 1e9}
    for dtype in dtypes:
        suffix = "" if dtype == "fp32" else "_bf16"
        ratios = {g: statistics.median([x / s for x, s in zip(v, single[dtype])])
                  for g, v in grouped[dtype].items()}
        out[f"grouped_throughput_vs_sequential{suffix}"] = {str(g): v for g, v in ratios.items()}
        for g, v in ratios.items():
            out[f"grouped_throughput_vs_sequential{suffix}_g{g}"] = v
        out[f"grouped_member_steps_per_s{suffix}"] = {
            str(g): statistics.median(v) for g, v in grouped[dtype].items()}
        out[f"single_steps_per_s{suffix}"] = statistics.median(single[dtype])
    out["grouped_mfu_fp32"] = statistics.median(grouped["fp32"][8]) * flops / peak
    out["single_mfu_fp32"] = statistics.median(single["fp32"]) * flops / peak
    out["grouped_throughput_vs_transformerlens_g8"] = statistics.median(
        [x / h for x, h in zip(grouped["fp32"][8], hooked)])
    if "bf16" not in dtypes:
        out["grouped_throughput_vs_sequential_bf16"] = None  # no native bf16 here: not measured
    if device == "cpu":
        import torch

        threads = str(torch.get_num_threads())
        cmd = [sys.executable, "-c", _GROUPED_RSS]
        n_rss = 1 if quick else 3
        single_rss = statistics.median(_peak_rss_mb(cmd + ["0", threads]) for _ in range(n_rss))
        g8_rss = statistics.median(_peak_rss_mb(cmd + ["8", threads]) for _ in range(n_rss))
        out.update(grouped_peak_rss_mb_g8=g8_rss, single_peak_rss_mb=single_rss,
                   grouped_peak_rss_ratio_g8=g8_rss / single_rss)
    else:  # launch-bound on a GPU: member-steps/s from G = 1 to 64 against one run
        sizes = (1, 2, 4, 8, 16, 32, 64)
        rates = {g: statistics.median(_grouped_rate(g, device, steps, skip, **cfg)[0]
                                      for _ in range(repeats)) for g in sizes}
        out["grouped_gpu_member_steps_per_s"] = {str(g): v for g, v in rates.items()}
        out["grouped_gpu_throughput_vs_single_g64"] = rates[64] / statistics.median(single["fp32"])
    return out


# --- patching ---------------------------------------------------------------------------------

def _patch_inputs(model, batch: int, seed: int, bos: int | None):
    from induction_toolkit.causal import make_prompt_pair
    from induction_toolkit.tasks.repeated import RepeatedTokensConfig

    seq_len = 16 if bos is None else 15  # 32 tokens (31 + BOS)
    task = RepeatedTokensConfig(d_vocab=model.cfg.d_vocab, seq_len=seq_len, repeats=2,
                                bos_token_id=bos)
    return make_prompt_pair(task, batch, seed=seed)


def bench_patch(ctx: dict) -> dict:
    import torch
    from transformer_lens import patching as tl_patching

    from induction_toolkit.causal import patch_heads
    from induction_toolkit.models import build_model

    device = ctx["device"]
    model = build_model("attn-only-4l", seed=0, device=device).eval()
    pair = _patch_inputs(model, 8, seed=0, bos=None)
    metric = pair.metric

    def ours():
        res = patch_heads(model, pair.clean, pair.corrupted, metric, by_position=True)
        gap = res.clean_metric - res.corrupted_metric
        return res.position_effects * gap + res.corrupted_metric  # back to raw metric values

    def transformer_lens():
        with torch.no_grad():
            _, cache = model.run_with_cache(pair.clean.to(device))
            return tl_patching.get_act_patch_attn_head_out_by_pos(
                model, pair.corrupted.to(device), cache, lambda logits: metric(logits).mean())

    import contextlib
    import io

    times_ours, times_tl = [], []
    want = got = None
    for r in range(3):
        with contextlib.redirect_stderr(io.StringIO()):  # TL's tqdm bar
            t = time.perf_counter()
            want = transformer_lens()
            _sync(device)
            times_tl.append(time.perf_counter() - t)
        t = time.perf_counter()
        got = ours()
        _sync(device)
        times_ours.append(time.perf_counter() - t)
        _log(f"patch repeat {r + 1}/3: TransformerLens {times_tl[-1]:.2f} s, toolkit "
             f"{times_ours[-1]:.2f} s ({times_tl[-1] / times_ours[-1]:.1f}×)")
    diff = float((got.float().cpu() - want.float().cpu()).abs().max())
    return {"patch_speedup_vs_transformerlens": statistics.median(
                [a / b for a, b in zip(times_tl, times_ours)]),
            "patch_max_abs_diff": diff, "patch_seconds_toolkit": statistics.median(times_ours),
            "patch_seconds_transformerlens": statistics.median(times_tl),
            "patch_shape": list(want.shape)}


def bench_attribution(ctx: dict) -> dict:
    from scipy.stats import spearmanr

    from induction_toolkit.causal import attribute_heads, patch_heads

    device, quick = ctx["device"], ctx["quick"]
    steps = 300 if quick else 600
    _log(f"training attn-only-4l for {steps} steps (fast path) for the attribution check")
    _, _, result = _train_rate("fast", device, steps, 0, preset="attn-only-4l", task="repeated",
                               batch_size=32, seed=0)
    model = result.model.eval()
    pair = _patch_inputs(model, 8, seed=1, bos=result.task.bos_token_id)
    metric = pair.metric
    t_exact, t_attr = [], []
    exact = attr = None
    for _ in range(3):
        t = time.perf_counter()
        exact = patch_heads(model, pair.clean, pair.corrupted, metric, by_position=True)
        _sync(device)
        t_exact.append(time.perf_counter() - t)
        t = time.perf_counter()
        attr = attribute_heads(model, pair.clean, pair.corrupted, metric, by_position=True)
        _sync(device)
        t_attr.append(time.perf_counter() - t)
    rho_heads = spearmanr(exact.effects.flatten().numpy(), attr.effects.flatten().numpy())[0]
    rho_pos = spearmanr(exact.position_effects.flatten().numpy(),
                        attr.position_effects.flatten().numpy())[0]
    return {"attribution_spearman_vs_exact": float(rho_heads),
            "attribution_spearman_vs_exact_by_position": float(rho_pos),
            "attribution_speedup_vs_exact": statistics.median(
                [a / b for a, b in zip(t_exact, t_attr)]),
            "attribution_trained_steps": steps,
            "attribution_clean_minus_corrupted": exact.clean_metric - exact.corrupted_metric}


# --- CLI start-up -----------------------------------------------------------------------------

def _induct_command() -> list[str]:
    exe = Path(sys.executable).parent / "induct"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("induct")
    return [found] if found else [sys.executable, "-c", "from cli.main import app; app()"]


def bench_help(ctx: dict) -> dict:
    n = 5 if ctx["quick"] else 9
    help_cmd = _induct_command() + ["--help"]
    base_cmd = [sys.executable, "-c", "import typer, rich"]
    # For reference, the same app with Typer's own rich help page, which imports typer.rich_utils
    # (rich.markdown, markdown_it, rich.traceback); cli/help.py draws the top-level page without.
    typer_cmd = [sys.executable, "-c", "from cli.main import app; from typer.core import TyperGroup; "
                 "app.info.cls = TyperGroup; import sys; sys.argv[0] = 'induct'; app()", "--help"]
    t_help, t_base, t_typer = [], [], []
    env = {**os.environ, "COLUMNS": "100"}
    for _ in range(n):
        for cmd, out in ((base_cmd, t_base), (help_cmd, t_help), (typer_cmd, t_typer)):
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=ROOT)
            out.append(time.perf_counter() - t)
    base = statistics.median(t_base)
    return {"help_time_ratio_vs_typer_rich_import": statistics.median(t_help) / base,
            "help_time_ratio_typer_rich_help_vs_typer_rich_import": statistics.median(t_typer) / base,
            "help_seconds": statistics.median(t_help),
            "typer_rich_import_seconds": base}


# --- memory -----------------------------------------------------------------------------------

_RSS_WRAPPER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True); "
                "sys.stderr.write(r.stderr.decode()[-2000:]) if r.returncode else None; "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if r.returncode == 0 else -1)")


def _peak_rss_mb(cmd: list[str]) -> float:
    """Peak RSS of ``cmd`` (its own process) in MiB, read by a fresh parent that waited for it."""
    out = subprocess.run([sys.executable, "-c", _RSS_WRAPPER, *cmd], check=True,
                         capture_output=True, text=True, cwd=ROOT)
    kib = int(out.stdout.strip().splitlines()[-1])
    if kib < 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr}")
    return kib / 1024


def bench_memory(ctx: dict) -> dict:
    from transformer_lens import HookedTransformerConfig

    from induction_toolkit.checkpoints import save_model
    from induction_toolkit.models import build_model

    device, quick = ctx["device"], ctx["quick"]
    cfg = HookedTransformerConfig(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072,
                                  n_ctx=1024, d_vocab=50257, act_fn="gelu_new",
                                  normalization_type="LN", model_name="gpt2-small-shaped")
    batch = 4 if quick else 16
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gpt2-small-shaped.safetensors"
        model = build_model(cfg, seed=0, device="cpu")
        weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2 ** 20
        save_model(model, path)
        del model
        base = _induct_command() + ["score", str(path), "--json", "--batch", str(batch),
                                    "--device", device]
        low = _peak_rss_mb(base + ["--low-memory"])
        default = _peak_rss_mb(base)
    return {"score_peak_rss_mb_low_memory": low, "score_peak_rss_mb_default": default,
            "score_model_weights_mb": weights_mb, "score_batch": batch}


# --- driver -----------------------------------------------------------------------------------

BENCHES = {"peak": bench_peak, "train": bench_train, "blog": bench_blog, "grouped": bench_grouped,
           "patch": bench_patch,
           "attribution": bench_attribution, "help": bench_help, "memory": bench_memory}

TARGETS = {  # key: (threshold, higher is better)
    "train_speedup_vs_transformerlens": (2.5, True),
    "blog_mfu_fp32": (0.85, True),
    "blog_bf16_speedup_vs_transformerlens": (1.8, True),
    "patch_speedup_vs_transformerlens": (8.0, True),
    "patch_max_abs_diff": (1e-5, False),
    "attribution_spearman_vs_exact": (0.9, True),
    "attribution_speedup_vs_exact": (50.0, True),
    "help_time_ratio_vs_typer_rich_import": (2.0, False),
    "train_loss_max_abs_diff_50_steps": (1e-5, False),
    "grouped_mfu_fp32": (0.7, True),
    "grouped_peak_rss_ratio_g8": (3.0, False),
    "grouped_gpu_throughput_vs_single_g64": (10.0, True),
}


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (≤ 5 min on 2 cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    info = machine()
    _log(f"running on {device}" + (f" ({info['gpu']})" if device == "cuda" else "") +
         f", {info['threads']} torch threads, load average {_load()}")
    ctx: dict[str, Any] = {"device": device, "quick": args.quick}
    results: dict[str, Any] = {"device": device, "quick": args.quick, "machine": info,
                               "load_average_start": _load()}
    wanted = args.only or list(SECTIONS)
    if "peak" not in wanted and ("blog" in wanted or "grouped" in wanted):
        wanted = ["peak", *wanted]  # MFU needs the peak of this run
    t0 = time.perf_counter()
    for name in SECTIONS:
        if name not in wanted:
            continue
        _log(f"[bold]{name}[/bold]")
        t = time.perf_counter()
        results.update(BENCHES[name](ctx))
        results[f"seconds_{name}"] = round(time.perf_counter() - t, 1)
    results["load_average_end"] = _load()
    results["seconds_total"] = round(time.perf_counter() - t0, 1)
    results["targets_met"] = {k: (results[k] >= v if hi else results[k] <= v)
                              for k, (v, hi) in TARGETS.items() if k in results}
    if args.json:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
    else:
        _print_table(results)
    return 0


def _print_table(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"induction-toolkit benchmarks on {results['device']} "
                        f"({results['machine']['cpu']}, {results['machine']['threads']} threads)",
                  header_style="bold")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_column("met", justify="center")
    for key, value in results.items():
        if isinstance(value, (dict, list)) or key in ("device", "quick"):
            continue
        target = TARGETS.get(key)
        met = results["targets_met"].get(key)
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        table.add_row(key, shown, ("≥ " if target[1] else "≤ ") + f"{target[0]:g}" if target else "",
                      "" if met is None else ("[green]yes[/green]" if met else "[red]no[/red]"))
    Console().print(table)


if __name__ == "__main__":
    raise SystemExit(main())
