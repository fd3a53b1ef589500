"""``induct train``: train a small model into a run directory, with a live progress bar."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from induction_toolkit.run_dir import METRICS_FILENAME  # names only: no torch behind it

from . import _reddy_train as _reddy
from ._common import stderr, stdout
from ._wandb import WandbOpt

_R = _reddy.annotations()  # a namespace: K, N, … (the reddy data options)


def _parse_options(items: list[str], what: str) -> dict:
    import json

    from induction_toolkit.errors import ConfigError

    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} must look like key=value, got '{item}'")
        try:
            out[key.replace("-", "_")] = json.loads(raw)
        except ValueError:
            out[key.replace("-", "_")] = raw
    return out


def train(
    preset: Annotated[str, typer.Option(help="Model preset (attn-only-1l/2l/4l, blog-4l).")] = "attn-only-2l",
    task: Annotated[str, typer.Option(help="Training task: repeated, copying, text or reddy (Reddy 2023's classification data; its options below).")] = "repeated",
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 1500,
    out: Annotated[Optional[Path], typer.Option(help="Run directory to create.")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the run in this directory.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate (default 3e-3 AdamW; reddy: 0.01 SGD).")] = None,
    warmup: Annotated[int, typer.Option(help="Linear warm-up steps.")] = 0,
    weight_decay: Annotated[Optional[float], typer.Option(help="Weight decay (default 0.01; reddy: 1e-6).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Sequences per step (default 32; reddy: 128).")] = None,
    dropout: Annotated[float, typer.Option(help="Attention and residual dropout.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the weights, data and dropout.")] = 0,
    seeds: Annotated[Optional[str], typer.Option(help="Train these seeds as one grouped model (0-7 or 0,1,5), writing OUT/seed_N for each (docs/performance.md).")] = None,
    eval_every: Annotated[Optional[int], typer.Option(help=f"Evaluate (one {METRICS_FILENAME} line) every N steps (default 10: resolves the induction transition; reddy: 500).")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option(help="Linear checkpoint spacing (default steps/10).")] = None,
    log_checkpoints: Annotated[int, typer.Option(help="Extra log-spaced checkpoints (dense early).")] = 20,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    embed_init_std: Annotated[Optional[float], typer.Option(help="Std of the initial token and position embeddings (default: the preset's; blog-4l 1.0, others TransformerLens' 0.8/√d_model).")] = None,
    model_opt: Annotated[Optional[list[str]], typer.Option("--model-opt", help="Model config override key=value (repeatable).")] = None,
    task_opt: Annotated[Optional[list[str]], typer.Option("--task-opt", help="Task option key=value (repeatable), e.g. max_segment=20.")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    fast: Annotated[bool, typer.Option("--fast/--hooked", help="Fused training forward (the same math as TransformerLens', checked in tests; falls back to it for configs it cannot fuse) or TransformerLens' own hooked forward.")] = True,
    bf16: Annotated[bool, typer.Option(help="bfloat16 autocast in the fused forward: faster only where bf16 matmuls are (recent GPUs, CPUs with AMX/AVX512-BF16).")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the fused forward: pays off on long runs (compiling takes a minute on CPU).")] = False,
    wandb: WandbOpt = None,
    ablate: Annotated[Optional[list[str]], typer.Option("--ablate", help="Ablate heads while training: L0H2,L0H1 (zero) or L0H2=mean (repeatable; docs/interventions.md).")] = None,
    clamp_pattern: Annotated[Optional[list[str]], typer.Option("--clamp-pattern", help="Clamp heads' attention patterns while training: L0H2=previous (also induction, uniform, bos; comma-separated, repeatable).")] = None,
    from_step: Annotated[int, typer.Option(help="First training step of --ablate/--clamp-pattern.")] = 0,
    to_step: Annotated[Optional[int], typer.Option(help="Last training step of --ablate/--clamp-pattern (default: to the end).")] = None,
    K: _R.K = None, N: _R.N = None, L: _R.L = None, B: _R.B = None,
    p_bursty: _R.p_bursty = None, p_novel: _R.p_novel = None, eps: _R.eps = None,
    alpha: _R.alpha = None, D: _R.D = None, P: _R.P = None,
) -> None:
    """Train a model, writing checkpoints (dense early), metrics.jsonl and config.json."""
    from induction_toolkit.errors import ConfigError
    from induction_toolkit.training import TrainConfig, train as run_training

    reddy_values = dict(K=K, N=N, L=L, B=B, p_bursty=p_bursty, p_novel=p_novel, eps=eps,
                        alpha=alpha, D=D, P=P)
    _reddy.check_not_given(task, reddy_values)
    if task == "reddy":
        if seeds is not None or ablate or clamp_pattern or wandb is not None:
            # Reddy's network trains in its own SGD loop (induction_toolkit.reddy.train)
            raise ConfigError("--seeds, --ablate, --clamp-pattern and --wandb do not apply to "
                              "--task reddy yet")
        return _reddy.train_reddy_cli(
            preset=preset, steps=steps, out=out, resume=resume, lr=lr, weight_decay=weight_decay,
            batch_size=batch_size, seed=seed, eval_every=eval_every or 500,
            eval_every_given=eval_every is not None, device=device, quiet=quiet, values=reddy_values)
    lr = 3e-3 if lr is None else lr
    weight_decay = 0.01 if weight_decay is None else weight_decay
    batch_size = 32 if batch_size is None else batch_size
    eval_every = 10 if eval_every is None else eval_every
    if resume is None and out is None:
        raise ConfigError("pass --out RUN_DIR (or --resume RUN_DIR)")
    if resume is not None and out is not None and Path(out) != Path(resume):
        raise ConfigError("pass either --out or --resume, not both")
    if steps <= 0:
        raise ConfigError(f"--steps must be > 0, got {steps}")
    if not fast and (bf16 or compile):
        raise ConfigError("--bf16 and --compile apply to the fused forward; drop --hooked")
    loss_fn = "hooked" if not fast else "fast" + ("-compiled" if compile else "") + ("-bf16" if bf16 else "")
    config = None
    if resume is not None and (ablate or clamp_pattern):
        raise ConfigError("--ablate/--clamp-pattern start a run; a resumed run keeps its own")
    if resume is None:
        config = TrainConfig(preset=preset, task=task, steps=steps, lr=lr, warmup=warmup,
                             weight_decay=weight_decay, batch_size=batch_size, dropout=dropout,
                             seed=seed, eval_every=eval_every, checkpoint_every=checkpoint_every,
                             log_checkpoints=log_checkpoints, device=device, loss_fn=loss_fn,
                             embed_init_std=embed_init_std,
                             model_overrides=_parse_options(model_opt or [], "--model-opt"),
                             task_options=_parse_options(task_opt or [], "--task-opt"))
        if ablate or clamp_pattern:
            from induction_toolkit.training.interventions import parse_interventions
            from induction_toolkit.training.loop import build_run_model_config

            shape = build_run_model_config(config)
            config.interventions = [iv.to_dict() for iv in parse_interventions(
                ablate, clamp_pattern, from_step=from_step, to_step=to_step,
                n_layers=shape.n_layers, n_heads=shape.n_heads)]
        if seeds is not None:
            from ._grouped import train_seeds

            return train_seeds(config, seeds, out, resume=False, quiet=quiet)
        from induction_toolkit.training.loop import check_new_run_dir

        check_new_run_dir(out, config)  # every refusal before the progress bar starts
    elif seeds is not None:
        from ._grouped import train_seeds

        return train_seeds(None, seeds, resume, resume=True, quiet=quiet)
    else:
        from induction_toolkit.run_dir import read_run_config

        read_run_config(resume)
    run_dir = Path(resume if resume is not None else out)

    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    columns = [TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"),
               TextColumn("best PM {task.fields[pm]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    logger = None
    if wandb is not None:  # W&B imported only when asked
        from induction_toolkit.wandb_log import WandbLogger

        logger = WandbLogger(run_dir, project=wandb, resume=resume is not None)
    with Progress(*columns, console=stderr, disable=quiet, transient=False) as bar:
        bar_task = bar.add_task("train", total=None, loss="-", tps="-", pm="-")

        def on_step(p):
            bar.update(bar_task, completed=p.step, total=p.total, loss=f"{p.loss:.3f}",
                       tps=f"{p.tokens_per_s:,.0f}", pm=f"{p.best_prefix_matching:.2f}")
            if logger is not None:
                logger.on_progress(p)

        try:
            result = run_training(config, run_dir, resume=resume is not None, progress=on_step)
        except BaseException as stop:
            if logger is not None:
                logger.finish(ok=False)
            if isinstance(stop, KeyboardInterrupt) and not stop.args:
                # Ctrl-C or SIGTERM: say what was kept, and how to go on
                from induction_toolkit.run_dir import list_checkpoints

                kept = list_checkpoints(run_dir)
                if kept:
                    stop.args = (f"checkpoint at step {max(kept)} saved; continue with "
                                 f"induct train --resume {run_dir}",)
            raise
    if logger is not None:
        logger.finish(ok=True)
    last = result.metrics[-1] if result.metrics else {}
    stdout.print(f"run {result.run_dir}: {result.config.steps} steps; eval loss "
                 f"{last.get('eval_loss', float('nan')):.3f}, repeated-half loss "
                 f"{last.get('loss_repeated_half', float('nan')):.3f}, ICL score "
                 f"{last.get('icl_score', float('nan')):+.3f}")
    stdout.print(f"next: induct score {result.run_dir} · induct dynamics {result.run_dir}",
                 style="dim")
