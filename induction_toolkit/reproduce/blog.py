"""The blog experiment (``seeds/000_blog_emergence_small_transformers.txt``).

A 4-layer, 256-dim, 4-head transformer trained on the copying task (``a b c | a b c``, sequence 64)
for 20k steps on 3 seeds, logging the per-head induction (prefix-matching) score every 100 steps.
Per seed we report the layer of the strongest induction head, its onset, the loss-drop step and the
blog's lag fit ``L(t) ≈ a − b·s(t − τ)`` (τ, R²). ``quick`` scales the model and the run down so
all seeds finish in minutes on two CPU cores while still crossing the transition.
"""

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ..atomic import atomic_write_bytes, atomic_write_text
from ..dynamics import Dynamics, analyse
from ..training import TrainConfig, train
from ..run_dir import config_path, read_metrics

# The blog's model is a from-scratch ``Transformer``: embeddings at unit variance (blog-4l's preset
# default, see models.PRESET_EMBED_INIT_STD), trained on the fused forward (same math as the
# hooked one, tests/test_fast_forward.py).
FULL = TrainConfig(preset="blog-4l", task="copying", steps=20_000, lr=1e-3, warmup=200,
                   weight_decay=0.01, batch_size=32, eval_every=100, log_checkpoints=30,
                   checkpoint_every=1000, loss_fn="fast")
# Scaled down: same depth, heads, MLPs and task; a narrower model and a shorter run.
QUICK = replace(FULL, steps=1000, lr=3e-3, warmup=50, eval_every=25, log_checkpoints=15,
                checkpoint_every=250, model_overrides={"d_model": 64, "d_head": 16, "d_mlp": 256})


@dataclass
class SeedResult:
    seed: int
    layer: int
    head: int
    final_prefix_matching: float
    onset_step: int
    loss_drop_step: int
    lag_steps: float
    r2: float
    phase_change: tuple[int, int]
    wall_s: float
    run_dir: str

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "layer": self.layer, "head": self.head,
                "label": f"L{self.layer}H{self.head}",
                "final_prefix_matching": self.final_prefix_matching,
                "onset_step": self.onset_step, "loss_drop_step": self.loss_drop_step,
                "lag": {"steps": self.lag_steps, "r2": self.r2},
                "phase_change": {"start_step": self.phase_change[0],
                                 "end_step": self.phase_change[1]},
                "wall_s": round(self.wall_s, 1), "run_dir": self.run_dir}


@dataclass
class BlogResult:
    quick: bool
    config: dict[str, Any]
    seeds: list[SeedResult] = field(default_factory=list)
    figure: str | None = None
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        layers = sorted({s.layer for s in self.seeds})
        return {"experiment": "blog", "quick": self.quick, "config": self.config,
                "seeds": [s.to_dict() for s in self.seeds],
                "same_layer_across_seeds": len(layers) == 1, "layers": layers,
                "figure": self.figure, "wall_s": round(self.wall_s, 1)}

    def to_table(self):
        from rich.table import Table

        table = Table(title="blog reproduction" + (" (quick)" if self.quick else ""),
                      header_style="bold")
        for col in ("seed", "head", "final PM", "onset", "loss drop", "lag τ", "R²", "wall s"):
            table.add_column(col, justify="right")
        for s in self.seeds:
            table.add_row(str(s.seed), f"L{s.layer}H{s.head}", f"{s.final_prefix_matching:.3f}",
                          str(s.onset_step), str(s.loss_drop_step), f"{s.lag_steps:+.0f}",
                          f"{s.r2:.3f}", f"{s.wall_s:.0f}")
        return table


def blog_config(quick: bool = False, **overrides: Any) -> TrainConfig:
    return replace(QUICK if quick else FULL, **overrides)


def reproduce_blog(out: str | Path, *, seeds: tuple[int, ...] = (0, 1, 2), quick: bool = False,
                   device: str = "auto",
                   progress: Callable[[int, Any], None] | None = None) -> BlogResult:
    """Train one run per seed under ``out/seed_N`` (resuming any that exist) and fit each."""
    out = Path(out)
    base = blog_config(quick, device=device)
    result = BlogResult(quick=quick, config=base.to_dict())
    runs = []
    t_all = time.perf_counter()
    for seed in seeds:
        cfg = replace(base, seed=seed)
        run_dir = out / f"seed_{seed}"
        t0 = time.perf_counter()
        on_step = (lambda p, s=seed: progress(s, p)) if progress else None
        exists = config_path(run_dir).is_file()
        train(cfg, run_dir, resume=exists, progress=on_step)
        rows = read_metrics(run_dir)
        dyn = analyse(rows)
        runs.append((seed, rows, dyn))
        result.seeds.append(_seed_result(seed, dyn, time.perf_counter() - t0, run_dir))
    from ..viz.dynamics_figures import seeds_figure
    from ..viz.figures import png_bytes

    fig_path = atomic_write_bytes(out / "blog_seeds.png", png_bytes(seeds_figure(runs)))
    result.figure = str(fig_path)
    result.wall_s = time.perf_counter() - t_all
    import json
    atomic_write_text(out / "blog_result.json", json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def _seed_result(seed: int, dyn: Dynamics, wall: float, run_dir: Path) -> SeedResult:
    layer, head = dyn.strongest_head
    h = next(h for h in dyn.heads if (h.layer, h.head) == (layer, head))
    return SeedResult(seed=seed, layer=layer, head=head,
                      final_prefix_matching=h.final_prefix_matching,
                      onset_step=dyn.induction_onset_step, loss_drop_step=dyn.loss_drop_step,
                      lag_steps=dyn.lag_steps, r2=dyn.lag_r2,
                      phase_change=(dyn.phase_start, dyn.phase_end), wall_s=wall,
                      run_dir=str(run_dir))
