"""What the analysis commands run a Reddy network on (its entry in ``analysis_data.TASK_ANALYSES``).

The inputs are continuous vectors and the network predicts one label per sequence, so the
repeated-token prompts of the other models do not apply. Instead, on the run's own data world
(class means, label vectors, seed), with sets drawn from the analysis seed (never the training
stream, never the run's evaluation seed):

- **ablation**: one batch of ``batch`` sequences from each of the in-context (IC: novel classes),
  in-weights (IW: known classes, the target's absent from the context) and swapped-label sets;
  ``loss`` is the label loss on IC, ``first_half_loss`` (the control) the label loss on IW, plus
  ``ic_accuracy``, ``iw_accuracy`` and ``swapped_accuracy`` (chance ``1/L`` on each). Mean and
  resample ablation draw from all three sets together.
- **patching**: clean = the IC batch; corrupted = the same sequences with the context labels
  permuted among its classes, none keeping its own (``ReddyTask.relabeled``): items, positions and
  target unchanged, so only what is read from the context differs. Metric: the log-probability
  (or logit minus mean logit) of the clean correct label. An induction head copying the label after
  the matching item carries the whole difference; a previous-token head alone carries little of
  it (the labels it would point to are the corrupted ones).
- **weights**: the token basis is the task's ``K`` class means and ``L`` label vectors (content
  dimensions, zero positions), the position basis the ``P`` one-hot positions; the OV view reads
  out along the same vectors (the network has no unembedding; its classifier is nonlinear).
- **scores**: :func:`induction_toolkit.reddy.progress.head_scores` on the IC set.
"""

import math
from pathlib import Path
from typing import Any

import torch

from ..analysis_data import AnalysisData, CausalInputs
from ..causal.ablation import AblationMetrics
from ..causal.data import LabelMetric
from ..errors import ConfigError
from ..tasks.reddy import ReddyTask

SETS = ("ic", "iw", "swapped")

OMITTED = {
    "scores": "the token-sequence scores (prefix-matching, copying, …) need token ids; a Reddy "
              "network reads continuous vectors. Its task's scores (previous-token and induction "
              "attention on the in-context set, as `induct score` prints) are in the notes",
    "attention": "the pattern views draw token sequences; a Reddy network's attention is summarised "
                 "by its progress measures (ILA1, TILA2) in the dynamics figures of induct "
                 "reproduce reddy",
    "dynamics": "the dynamics section reads the ICL score and token-sequence head scores of a token "
                "run; a Reddy run's accuracies and progress measures are drawn by induct reproduce "
                "reddy (docs/reddy.md)",
}


def load(path: str | Path, *, step: int | None = None, device: str | None = None, config: Any = None,
         dtype: str | None = None) -> AnalysisData:
    """A Reddy run's network at ``step`` (default the last) with its task's analysis inputs."""
    from ..checkpoints import LoadedModel
    from ..run_dir import list_checkpoints
    from .train import load_reddy

    if device not in (None, "cpu", "auto"):
        raise ConfigError("a reddy run is analysed on the CPU (the network is tiny); pass --device cpu")
    if config is not None and config != {}:
        raise ConfigError("--config/--n-heads do not apply to a reddy run (the run records its own network)")
    if dtype not in (None, "float32"):
        raise ConfigError("a reddy run is analysed in float32")
    model, task, train_config = load_reddy(path, step)
    model.eval()
    loaded_step = max(list_checkpoints(path)) if step is None else step
    loaded = LoadedModel(model, str(path), "run", task=task.to_dict(), step=loaded_step,
                         seed=train_config.seed)
    return AnalysisData(
        loaded, "reddy",
        causal=lambda **kw: causal_inputs(task, batch=kw["batch"], seed=kw["seed"]),
        basis=weight_basis(task),
        task_scores=lambda batch, seed: task_scores(model, task, batch, seed),
        omitted=dict(OMITTED))


def causal_inputs(task: ReddyTask, *, batch: int, seed: int) -> CausalInputs:
    """The ablation sets (IC, IW, swapped) and the IC / relabelled-IC patching pair."""
    c = task.config
    sets = {name: task.eval_set(name, batch, seed=seed) for name in SETS}
    inputs = torch.cat([sets[n].inputs for n in SETS])
    target = torch.cat([sets[n].target for n in SETS])
    rows = {n: torch.arange(i * batch, (i + 1) * batch) for i, n in enumerate(SETS)}
    ablation = AblationMetrics(
        target=LabelMetric(target, rows["ic"], "logprob", "ic_label_logprob"),
        control=LabelMetric(target, rows["iw"], "logprob", "iw_label_logprob"),
        extra={f"{n}_accuracy": LabelMetric(target, rows[n], "accuracy", f"{n}_accuracy") for n in SETS},
        labels=("IC loss", "IW loss"),
        data={"task": "reddy", "sets": list(SETS), "batch_per_set": batch, "batch": int(inputs.shape[0]),
              "seed": seed, "n_tokens": c.seq_len, "chance_accuracy": 1 / c.L,
              "loss": "label loss on the in-context set (IC, novel classes)",
              "first_half_loss": "label loss on the in-weights set (IW): the control"})
    ic = sets["ic"]
    corrupted = task.relabeled(ic, seed=seed + 1)
    everything = torch.arange(batch)
    metrics = {"logprob": LabelMetric(ic.target, everything, "logprob", "ic_label_logprob"),
               "logit": LabelMetric(ic.target, everything, "logit", "ic_label_logit")}
    data = {"task": "reddy", "set": "ic", "batch": batch, "seed": seed, "n_tokens": c.seq_len,
            "chance_logprob": -math.log(c.L),  # a uniform prediction over the L labels
            "corrupted": "the same sequences with the context labels permuted among its classes "
                         "(none keeps its own)"}
    notes = ["reddy run: --seq-len and --repeats do not apply (a sequence is the task's "
             f"2N+1 = {c.seq_len} vectors); sets of {batch} sequences drawn from seed {seed}"]
    patch_notes = ["reddy patching pair: only the label tokens differ, so a previous-token head's "
                   "output is nearly the same in both runs and path patching from it measures ≈ 0 "
                   "by construction; ablation shows whether it is needed"]
    return CausalInputs(ic.inputs, corrupted.inputs, ablation, metrics, data,
                        f"{batch} in-context sequences of {c.N} item–label pairs and a target "
                        "(novel classes); corrupted: their context labels permuted", notes,
                        ablation_inputs=inputs,
                        ablation_description=f"{batch} sequences of each of the in-context (IC), "
                        "in-weights (IW) and swapped-label sets", patch_notes=patch_notes)


def weight_basis(task: ReddyTask):
    """Class means and label vectors (content dims) as the token basis, one-hot positions as P."""
    from ..weights.circuits import Basis

    c = task.config
    content = torch.cat([task.class_means, task.label_vectors])  # [K + L, D]
    E = torch.cat([torch.zeros(content.shape[0], c.P), content], dim=1)
    P = torch.cat([torch.eye(c.P), torch.zeros(c.P, c.D)], dim=1)
    names = [f"class {k}" for k in range(c.K)] + [f"label {j}" for j in range(c.L)]
    notes = [f"reddy run: token blocks are read in the task's {c.K} class means then its {c.L} label "
             f"vectors (content dimensions), position blocks in the {c.P} one-hot positions; the OV "
             "view and its eigen score read out along the same class and label vectors (the network "
             "has no unembedding)"]
    return Basis(E, P, E.T.contiguous(), names, notes)


def task_scores(model, task: ReddyTask, batch: int, seed: int) -> dict[str, Any]:
    """``induct score`` on a Reddy run: each head's previous-token and induction attention on IC."""
    from .progress import head_scores

    result = head_scores(model, task.eval_set("ic", batch, seed=seed))
    c = task.config
    seq = 2 * c.N + 1
    result["chance"] = {"previous_token": sum(1 / (i + 1) for i in range(1, seq)) / (seq - 1),
                        "induction": max(c.B, 1) / seq}
    result["sequences"] = "novel-class (in-context) sequences"
    return result
