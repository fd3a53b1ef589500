"""The blog experiment (``seeds/000_blog_emergence_small_transformers.txt``).

A 4-layer, 256-dim, 4-head transformer trained on the copying task (``a b c | a b c``, sequence 64)
for 20k steps on 3 seeds, logging the per-head induction (prefix-matching) score. Per seed and per
initialisation we report the strongest induction head (0-based layer), its onset, the lag of the
score behind the in-context loss (``dynamics.analyse``: τ with its interval, R², the null R² of the
heads that never become induction heads) and the in-context loss before and after. ``quick`` scales
the model and the run down so all runs finish in minutes on two CPU cores while still crossing the
transition.

**Two initialisations, side by side** (``docs/training.md``, "The blog reproduction"):
``unit`` draws the token and position embeddings from N(0, 1) (blog-4l's preset default,
``models.PRESET_EMBED_INIT_STD``; PyTorch's ``nn.Embedding`` default), ``tl`` from TransformerLens'
N(0, (0.8/√d_model)²), as every other weight. The unit default was chosen after seeing that the
TL init forms no induction head in the quick run, so both are always reported.
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes, atomic_write_text
from ..dynamics import analyse
from ..errors import ConfigError
from ..models import PRESET_EMBED_INIT_STD, preset_config
from ..scores import head_label
from ..training import TrainConfig, train
from ..run_dir import config_path, read_metrics

# Evaluations at most 10 steps apart, so the transition is resolved (docs/science.md, "Phase change").
FULL = TrainConfig(preset="blog-4l", task="copying", steps=20_000, lr=1e-3, warmup=200,
                   weight_decay=0.01, batch_size=32, eval_every=10, log_checkpoints=30,
                   checkpoint_every=1000, loss_fn="fast")
# Scaled down: same depth, heads, MLPs and task; a narrower model and a shorter run.
QUICK = replace(FULL, steps=1000, lr=3e-3, warmup=50, eval_every=10, log_checkpoints=15,
                checkpoint_every=250, model_overrides={"d_model": 64, "d_head": 16, "d_mlp": 256})

INITS: dict[str, str] = {
    "unit": "token and position embeddings N(0, 1) (blog-4l's default)",
    "tl": "TransformerLens' init: embeddings N(0, (0.8/√d_model)²) like every other weight",
}
DEFAULT_INITS: tuple[str, ...] = ("unit", "tl")

LAYER_NOTE = ("layers are 0-based; the blog's 'layer 2' is ambiguous (the second layer, our 1, if it "
              "counts from 1; the third, our 2, if from 0), so no layer is claimed to agree with it")


def embed_init_std(init: str, cfg: TrainConfig) -> float:
    """The std (of N(0, std²)) the ``init`` draws blog-4l's token and position embeddings from."""
    if init == "unit":
        return PRESET_EMBED_INIT_STD[cfg.preset]
    if init == "tl":
        return float(preset_config(cfg.preset, **cfg.model_overrides).initializer_range)
    raise ConfigError(f"unknown init '{init}'; choose from: {', '.join(INITS)}")


def blog_config(quick: bool = False, init: str = "unit", **overrides: Any) -> TrainConfig:
    """The run config of one blog run: the full (or quick) schedule with the ``init``'s embeddings."""
    base = replace(QUICK if quick else FULL, **overrides)
    return replace(base, embed_init_std=embed_init_std(init, base))


@dataclass
class SeedResult:
    """One seed of one initialisation: the keys ``dynamics.analyse`` gives, read generically."""

    init: str
    seed: int
    dynamics: dict[str, Any]  # Dynamics.to_dict()
    in_context_loss: dict[str, Any]  # before / final (nats) and the steps they were read at
    wall_s: float  # this call's time (training, or only analysis when the run was complete)
    run_dir: str
    train_elapsed_s: float | None = None  # the run's own training time, from its metrics

    @property
    def strongest(self) -> dict[str, Any]:
        """The strongest head's entry (layer, head, label) of the run's dynamics."""
        return self.dynamics["strongest_head"]

    @property
    def head_row(self) -> dict[str, Any]:
        """The strongest head's per-head dynamics row (empty when the run has none)."""
        s = self.strongest
        return next((h for h in self.dynamics.get("heads", [])
                     if (h["layer"], h["head"]) == (s["layer"], s["head"])), {})

    @property
    def onset_step(self) -> float | None:
        """The step the strongest head's prefix-matching rise starts, or None."""
        return self.head_row.get("onset_step", self.dynamics.get("induction_onset_step"))

    def to_dict(self) -> dict[str, Any]:
        """This seed as a JSON-ready dict: head, onset and lag (steps), in-context loss (nats), times (s)."""
        d, lag = self.dynamics, self.dynamics.get("lag") or {}
        return {"init": self.init, "seed": self.seed,
                "layer": self.strongest["layer"], "head": self.strongest["head"],
                "label": head_label(self.strongest["layer"], self.strongest["head"]),
                "final_prefix_matching": self.head_row.get("final_prefix_matching"),
                "onset_step": self.onset_step, "loss_drop_step": d.get("loss_drop_step"),
                "lag": dict(lag), "phase_change": d.get("phase_change"),
                "in_context_loss": dict(self.in_context_loss),
                "wall_s": round(self.wall_s, 1), "train_elapsed_s": self.train_elapsed_s,
                "run_dir": self.run_dir,
                "notes": list(d.get("notes", []))}


@dataclass
class BlogResult:
    """Every seed of every initialisation of the blog reproduction, with configs and figures."""

    quick: bool
    configs: dict[str, dict[str, Any]]  # per init
    seeds: list[SeedResult] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)  # per init
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The whole reproduction as a JSON-ready dict (steps, nats, seconds)."""
        per_init = {}
        for init in self.configs:
            runs = [s for s in self.seeds if s.init == init]
            layers = sorted({s.strongest["layer"] for s in runs})
            per_init[init] = {"description": INITS[init], "layers": layers,
                              "same_layer_across_seeds": len(layers) == 1}
        first = next(iter(self.configs.values()), {})
        return {"experiment": "blog", "quick": self.quick, "inits": per_init,
                "config": first, "configs": self.configs,
                "seeds": [s.to_dict() for s in self.seeds],
                "layer_note": LAYER_NOTE,
                "figure": next(iter(self.figures.values()), None), "figures": dict(self.figures),
                "wall_s": round(self.wall_s, 1)}

    def to_table(self):
        """A rich table, one row per seed: head, onset and lag (steps), R², in-context loss (nats)."""
        from rich.table import Table

        table = Table(title="blog reproduction" + (" (quick)" if self.quick else ""),
                      header_style="bold")
        for col in ("init", "seed", "head", "final PM", "onset", "lag τ [95% CI]", "R²", "null R²",
                    "ICL loss before", "ICL loss final", "train s"):
            table.add_column(col, justify="left" if col == "init" else "right")
        for s in self.seeds:
            row = s.to_dict()
            lag = row["lag"]
            ci = lag.get("ci95")
            tau = _fmt(lag.get("steps"), "{:+.0f}")
            if ci is not None and None not in ci:
                tau += f" [{ci[0]:+.0f}, {ci[1]:+.0f}]"
            icl = row["in_context_loss"]
            table.add_row(s.init, str(s.seed), row["label"], _fmt(row["final_prefix_matching"], "{:.3f}"),
                          _fmt(row["onset_step"], "{:.0f}"), tau, _fmt(lag.get("r2"), "{:.3f}"),
                          _fmt(lag.get("null_r2"), "{:.3f}"), _fmt(icl.get("before"), "{:.3f}"),
                          _fmt(icl.get("final"), "{:.3f}"), _fmt(s.train_elapsed_s, "{:.0f}"))
        return table


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None else spec.format(value)


def in_context_loss(rows: list[dict[str, Any]], onset: float | None) -> dict[str, Any]:
    """The repeated-half (in-context) loss, nats: at the last evaluation before ``onset`` and at the end.

    ``before`` is None when there is no onset (no transition to be before). ``first_half_final`` is
    the control at the end: the loss on the first copy, which no induction head can lower.
    """
    last = rows[-1]
    before = [r for r in rows if onset is not None and r["step"] < onset]
    return {"before": before[-1]["loss_repeated_half"] if before else None,
            "before_step": before[-1]["step"] if before else None,
            "final": last["loss_repeated_half"], "final_step": last["step"],
            "first_half_final": last.get("loss_first_half")}


def run_dir(out: str | Path, init: str, seed: int) -> Path:
    """Where ``reproduce_blog`` keeps the run of one init and seed: ``out/<init>/seed_<seed>``."""
    return Path(out) / init / f"seed_{seed}"


def reproduce_blog(out: str | Path, *, seeds: tuple[int, ...] = (0, 1, 2), quick: bool = False,
                   inits: tuple[str, ...] = DEFAULT_INITS, device: str = "auto",
                   progress: Callable[[str, int, Any], None] | None = None) -> BlogResult:
    """Train one run per init and seed under ``out/<init>/seed_N`` (resuming any that exist), fit each.

    ``progress(init, seed, training_progress)`` after every step.
    """
    if not inits:
        raise ConfigError("--inits needs at least one of: " + ", ".join(INITS))
    for init in inits:
        if init not in INITS:
            raise ConfigError(f"unknown init '{init}'; choose from: {', '.join(INITS)}")
    out = Path(out)
    configs = {init: blog_config(quick, init, device=device) for init in inits}
    result = BlogResult(quick=quick, configs={i: c.to_dict() for i, c in configs.items()})
    t_all = time.perf_counter()
    from ..viz.dynamics_figures import seeds_figure
    from ..viz.figures import png_bytes

    for init, base in configs.items():
        runs = []
        for seed in seeds:
            cfg = replace(base, seed=seed)
            where = run_dir(out, init, seed)
            t0 = time.perf_counter()
            on_step = (lambda p, i=init, s=seed: progress(i, s, p)) if progress else None
            exists = config_path(where).is_file()
            train(cfg, where, resume=exists, progress=on_step)
            rows = read_metrics(where)
            dyn = analyse(rows)
            runs.append((seed, rows, dyn))
            seed_result = SeedResult(init=init, seed=seed, dynamics=dyn.to_dict(), in_context_loss={},
                                     wall_s=time.perf_counter() - t0, run_dir=str(where),
                                     train_elapsed_s=rows[-1].get("elapsed_s") if rows else None)
            seed_result.in_context_loss = in_context_loss(rows, seed_result.onset_step)
            result.seeds.append(seed_result)
        fig_path = atomic_write_bytes(out / f"blog_seeds_{init}.png", png_bytes(seeds_figure(runs)))
        result.figures[init] = str(fig_path)
    result.wall_s = time.perf_counter() - t_all
    atomic_write_text(out / "blog_result.json", json.dumps(result.to_dict(), indent=2) + "\n")
    return result
