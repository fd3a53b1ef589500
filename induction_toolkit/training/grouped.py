"""Grouped training: G runs that differ only in shape-preserving values, as one batched model.

``train_grouped(configs, out_dirs)`` trains G runs — seeds, data seeds, learning rates, weight
decays, dropout rates, warm-ups, betas, step counts — in one process, one forward and backward
per step for all of them (:class:`~induction_toolkit.grouped_forward.GroupedModel`), and writes G
ordinary run directories, each identical in format to a single run's (docs/performance.md).

Each member is a ``training.loop._Run``: the single loop's own object builds its model, optimizer,
task, data generator, evaluator and RNG streams, evaluates, checkpoints, writes metrics and
resumes. Only the step is grouped: before evaluating or checkpointing a member, its weights and
AdamW state are copied out of the group into the member's model and ``torch.optim.AdamW`` (one
code path for run directories; a member's ``train_state.pt`` is a single run's).

Per member, as in a single run with its config: initial weights (built from its seed), data (its
task generator), dropout masks (its own copy of the global streams a single run seeds, swapped in
whenever the member's code runs), AdamW hyper-parameters and state, evaluation and checkpoint
schedule. A member whose loss goes non-finite stops there (its last good checkpoint stays, as in a
single run) and is reported in its result's ``diverged``; the others go on. Resuming continues
every member bit for bit; members whose latest checkpoints are at different steps (a kill while
the group was writing them) wait, unchanged, until the group reaches their step.
"""

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, NonFiniteLossError
from ..grouped_forward import GroupedModel
from .config import TrainConfig
from .grouped_adamw import GroupedAdamW
from .loop import (TrainResult, _lr_at, _open_run, _Run, _SignalGuard, build_run_model, build_task,
                   check_new_run_dir)

# TrainConfig fields members of one group may differ in: none of them changes a tensor's shape.
# ``data_seed`` is listed for configs that carry one.
GROUPABLE_FIELDS = frozenset({"seed", "data_seed", "lr", "weight_decay", "dropout", "warmup",
                              "betas", "steps"})
# loss functions the grouped forward runs, and whether under bfloat16 autocast
GROUPED_LOSS_FNS = {"fast": False, "fast-bf16": True}

__all__ = ["GROUPABLE_FIELDS", "GroupProgress", "MemberResult", "check_groupable", "parse_seeds",
           "raise_if_diverged", "seed_run_dir", "train_grouped"]


@dataclass
class MemberResult(TrainResult):
    """One member's finished run; ``diverged`` says at which step its loss became non-finite.

    A diverged member's ``model`` holds its weights at its last evaluation.
    """

    diverged: str | None = None


@dataclass
class GroupProgress:
    """What a progress display needs after each grouped step."""

    step: int
    total: int
    losses: list[float | None]  # each member's training loss this step (None: it did not step)
    tokens_per_s: float  # summed over the members that stepped
    best_prefix_matching: float  # best over members
    diverged: int  # members stopped so far


def parse_seeds(text: str) -> list[int]:
    """Seeds from ``"0-7"``, ``"0,1,5"`` or a mix (``"0-3,8"``); ``ConfigError`` when malformed."""
    seeds: list[int] = []
    for part in text.replace(" ", "").split(","):
        lo, sep, hi = part.partition("-")
        try:
            first, last = (int(lo), int(hi)) if sep else (int(part), int(part))
        except ValueError:
            raise ConfigError(f"--seeds must look like 0-7 or 0,1,5, got '{text}'") from None
        if first < 0 or last < first:
            raise ConfigError(f"--seeds: '{part}' is not a range of seeds ≥ 0 (low-high)")
        seeds.extend(range(first, last + 1))
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds names a seed twice: '{text}'")
    return seeds


def seed_run_dir(out: str | Path, seed: int) -> Path:
    """Where ``induct train --seeds`` puts the run of ``seed`` inside ``out``."""
    return Path(out) / f"seed_{seed}"


def check_groupable(configs: Sequence[TrainConfig]) -> None:
    """Raise ``ConfigError`` unless ``configs`` can train as one group.

    They must agree in every field outside ``GROUPABLE_FIELDS`` (preset, task, batch size,
    schedule, device, …) and use a loss function the grouped forward runs.
    """
    if not configs:
        raise ConfigError("a group needs at least one run")
    first = configs[0].to_dict()
    for i, cfg in enumerate(configs[1:], start=1):
        other = cfg.to_dict()
        diff = sorted(k for k in first if k not in GROUPABLE_FIELDS and first[k] != other.get(k))
        if diff:
            raise ConfigError(f"runs 0 and {i} differ in {', '.join(diff)}; grouped runs may "
                              f"differ only in {', '.join(sorted(GROUPABLE_FIELDS))}")
    if configs[0].interventions:
        raise ConfigError("grouped training runs the fused forward, which has no hooks for "
                          "--ablate/--clamp-pattern; train these runs one by one")
    if configs[0].loss_fn not in GROUPED_LOSS_FNS:
        raise ConfigError(f"grouped training runs the fused forward (loss_fn "
                          f"{' or '.join(GROUPED_LOSS_FNS)}), not '{configs[0].loss_fn}'")


def train_grouped(configs: Sequence[TrainConfig] | None, out_dirs: Sequence[str | Path] | None, *,
                  resume: bool = False,
                  progress: bool | Callable[[GroupProgress], None] = True,
                  handle_signals: bool = True) -> list[MemberResult]:
    """Train ``configs`` as one group into ``out_dirs`` (one ordinary run directory each).

    ``out_dirs=None`` writes nothing. ``resume=True`` continues the runs in ``out_dirs``
    (``configs`` may then be None, or give new step counts/device). ``progress``: True shows a
    rich progress bar on stderr, a callable receives a :class:`GroupProgress` per step. Returns
    one result per member, in order; diverged members are reported, not raised.
    """
    dirs = [Path(d) for d in out_dirs] if out_dirs is not None else None
    if dirs is not None and len(set(d.absolute() for d in dirs)) != len(dirs):
        raise ConfigError("grouped runs need distinct run directories")
    if resume:
        if dirs is None:
            raise ConfigError("resume needs the run directories")
        if configs is not None and len(configs) != len(dirs):
            raise ConfigError(f"{len(configs)} configs for {len(dirs)} run directories")
        opened = [_open_run(configs[i] if configs is not None else None, d, True)
                  for i, d in enumerate(dirs)]
        check_groupable([c for c, _ in opened])
    else:
        if configs is None:
            raise ConfigError("train_grouped needs configs (or resume=True with run directories)")
        configs = list(configs)
        if dirs is not None and len(configs) != len(dirs):
            raise ConfigError(f"{len(configs)} configs for {len(dirs)} run directories")
        check_groupable(configs)
        _check_fusable(configs[0])
        for cfg, d in zip(configs, dirs or []):
            check_new_run_dir(d, cfg)  # every refusal before anything is written
        opened = [_open_run(cfg, dirs[i] if dirs else None, False)
                  for i, cfg in enumerate(configs)]
    group = _Group(opened, dirs)
    callback = progress if callable(progress) else None
    with _progress_bar(group.total) if progress is True else contextlib.nullcontext() as bar:
        group.run(bar or callback, handle_signals)
    return group.results()


def _check_fusable(config: TrainConfig) -> None:
    from ..fast_forward import unsupported_reason

    task = build_task(config)
    reason = unsupported_reason(build_run_model(config, task, "cpu"))
    if reason is not None:
        raise ConfigError(f"grouped training needs a model the fused forward covers: {reason}")


class _Streams:
    """A member's copy of the global RNG streams (Python, NumPy, torch) a single run seeds."""

    def __init__(self, device: str):
        self.python = random.getstate()
        self.numpy = np.random.get_state()
        self.cpu = torch.Generator()
        self.cpu.set_state(torch.get_rng_state())
        self.cuda = device.startswith("cuda")
        # dropout draws on the model's device, as a single run's F.dropout does
        self.dropout = self.cpu
        if self.cuda:
            self.dropout = torch.Generator(device=device)
            self.dropout.set_state(torch.cuda.get_rng_state(device))
        self.device = device

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Run the member's own code (evaluate, checkpoint) with its streams as the global ones."""
        outer = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
                 torch.cuda.get_rng_state(self.device) if self.cuda else None)
        random.setstate(self.python)
        np.random.set_state(self.numpy)
        torch.set_rng_state(self.cpu.get_state())
        if self.cuda:
            torch.cuda.set_rng_state(self.dropout.get_state(), self.device)
        try:
            yield
        finally:
            self.python, self.numpy = random.getstate(), np.random.get_state()
            self.cpu.set_state(torch.get_rng_state())
            if self.cuda:
                self.dropout.set_state(torch.cuda.get_rng_state(self.device))
            random.setstate(outer[0])
            np.random.set_state(outer[1])
            torch.set_rng_state(outer[2])
            if self.cuda:
                torch.cuda.set_rng_state(outer[3], self.device)


class _Group:
    """The members' ``_Run``s, their streams, the grouped model and optimizer."""

    def __init__(self, opened: list, dirs: list[Path] | None):
        outer = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        self.runs: list[_Run] = []
        self.streams: list[_Streams] = []
        try:
            for i, (config, saved) in enumerate(opened):
                # each _Run seeds (or restores) the global streams: capture them as the member's
                run = _Run(config, dirs[i] if dirs else None, saved)
                self.runs.append(run)
                self.streams.append(_Streams(run.device))
        finally:
            random.setstate(outer[0])
            np.random.set_state(outer[1])
            torch.set_rng_state(outer[2])
        configs = [r.config for r in self.runs]
        self.bf16 = GROUPED_LOSS_FNS[configs[0].loss_fn]
        self.model = GroupedModel([r.model for r in self.runs], bf16=self.bf16)
        self.optimizer = GroupedAdamW(self.model, betas=[c.betas for c in configs],
                                      weight_decay=[c.weight_decay for c in configs])
        for g, run in enumerate(self.runs):
            self.optimizer.load_member(g, run.optimizer)
        self.diverged: list[str | None] = [None] * len(self.runs)
        self.total = max(c.steps for c in configs)
        self.device = self.runs[0].device

    def run(self, progress: Callable[[GroupProgress], None] | None, handle_signals: bool) -> None:
        """Train every member to its ``steps``, evaluating and checkpointing each on its schedule."""
        for g, run in enumerate(self.runs):
            if run.resumed_from is None:
                if 0 in run.eval_at:
                    self._evaluate(g, 0, None)
                if 0 in run.ckpt_at:
                    self._checkpoint(g, 0)
        guard = _SignalGuard() if handle_signals else None
        start = min(r.state.step for r in self.runs) + 1
        with guard if guard is not None else contextlib.nullcontext():
            for step in range(start, self.total + 1):
                stepped, losses, dt = self.step(step)
                if not any(stepped) and all(d is not None or r.state.step >= r.config.steps
                                            for d, r in zip(self.diverged, self.runs)):
                    break
                stopping = guard is not None and guard.received is not None
                for g in (g for g, on in enumerate(stepped) if on):
                    run = self.runs[g]
                    if step in run.eval_at:
                        self._evaluate(g, step, run._take_mean_loss())
                    if step in run.ckpt_at or stopping:
                        self._checkpoint(g, step)
                if progress is not None:
                    tokens = sum(r.tokens_per_step for r, on in zip(self.runs, stepped) if on)
                    progress(GroupProgress(
                        step=step, total=self.total, losses=losses,
                        tokens_per_s=tokens / max(dt, 1e-9),
                        best_prefix_matching=max(r.state.best_pm for r in self.runs),
                        diverged=sum(d is not None for d in self.diverged)))
                if stopping:
                    guard.reraise()

    def step(self, step: int) -> tuple[list[bool], list[float | None], float]:
        """One grouped optimizer step (1-based): which members stepped, their losses, seconds."""
        t0 = time.perf_counter()
        active = [d is None and r.state.step == step - 1 and step <= r.config.steps
                  for d, r in zip(self.diverged, self.runs)]
        batches = []
        for run, on in zip(self.runs, active):
            if on:
                batches.append(run.task.sample(run.config.batch_size, run.generator, step=step))
            else:  # a member that does not step: placeholder tokens, nothing drawn from its streams
                batches.append(torch.zeros(run.config.batch_size, run.task.seq_len,
                                           dtype=torch.long))
        tokens = torch.stack(batches).to(self.device)
        lrs = [_lr_at(r.config, step - 1) for r in self.runs]
        losses = self.model.losses(tokens, dropout=[r.config.dropout for r in self.runs],
                                   generators=[s.dropout for s in self.streams], active=active)
        values = losses.detach().float().cpu().tolist()
        for g, on in enumerate(active):
            if on and not math.isfinite(values[g]):
                self._diverge(g, step)
                active[g] = False
        if any(active):
            mask = torch.tensor(active, device=losses.device)
            self.model.backward(losses, mask)
            self.optimizer.step(lrs, active)
        dt = time.perf_counter() - t0
        for g, on in enumerate(active):
            if on:
                state = self.runs[g].state
                state.step = step
                state.elapsed += dt  # the group's wall time: the member trained for all of it
                state.loss_sum += values[g]
                state.loss_n += 1
        return active, [v if on else None for v, on in zip(values, active)], dt

    def _diverge(self, g: int, step: int) -> None:
        run = self.runs[g]
        where = f"step {run.last_good}" if run.last_good is not None else "none"
        self.diverged[g] = (f"loss became non-finite at step {step}; last good checkpoint: "
                            f"{where}")

    def _evaluate(self, g: int, step: int, train_loss: float | None) -> None:
        run = self.runs[g]
        self.model.store_member(g, run.model)
        with self.streams[g].active():
            run.evaluate(step, train_loss)

    def _checkpoint(self, g: int, step: int) -> None:
        run = self.runs[g]
        if run.run_dir is None:
            return
        self.model.store_member(g, run.model)
        lr = _lr_at(run.config, step - 1) if step > 0 else run.config.lr
        self.optimizer.store_member(g, run.optimizer, lr)
        with self.streams[g].active():
            run.checkpoint(step)

    def results(self) -> list[MemberResult]:
        """Each member's result, its model holding its final (or last evaluated) weights."""
        out = []
        for g, run in enumerate(self.runs):
            if self.diverged[g] is None:
                self.model.store_member(g, run.model)
            run.model.eval()
            out.append(MemberResult(run_dir=run.run_dir, model=run.model, config=run.config,
                                    task=run.task, metrics=run.metrics,
                                    resumed_from=run.resumed_from, diverged=self.diverged[g]))
        return out


@contextlib.contextmanager
def _progress_bar(total: int) -> Iterator[Callable[[GroupProgress], None]]:
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    columns = [TextColumn("[bold]train (grouped)"), BarColumn(), MofNCompleteColumn(),
               TextColumn("mean loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"),
               TextColumn("best PM {task.fields[pm]}"), TextColumn("{task.fields[div]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task("train", total=total, loss="-", tps="-", pm="-", div="")

        def update(p: GroupProgress) -> None:
            live = [v for v in p.losses if v is not None]
            bar.update(task, completed=p.step,
                       loss=f"{sum(live) / len(live):.3f}" if live else "-",
                       tps=f"{p.tokens_per_s:,.0f}", pm=f"{p.best_prefix_matching:.2f}",
                       div=f"{p.diverged} diverged" if p.diverged else "")

        yield update


def raise_if_diverged(results: Sequence[MemberResult]) -> None:
    """Raise ``NonFiniteLossError`` naming every diverged member (after the others finished)."""
    bad = [f"{r.run_dir or f'member {i}'}: {r.diverged}" for i, r in enumerate(results)
           if r.diverged]
    if bad:
        raise NonFiniteLossError(f"{len(bad)} of {len(results)} grouped runs diverged: " +
                                 "; ".join(bad))


