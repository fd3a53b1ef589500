"""What a report of a checkpoint or training run holds: every analysis run once, every choice named.

:func:`build_report` loads a model (or takes a loaded one), scores it, reads the attention patterns
of its top heads, runs ablation, activation patching and, where the circuit allows it, path
patching, reads the weights, and analyses a run's training dynamics once. It returns a
:class:`Report` of result objects; :mod:`induction_toolkit.viz.report` only draws it as HTML.

Choices the report makes, and why (recorded in :class:`PathChoice` / :class:`WeightChoice`):

- attention patterns: the ``top`` heads by prefix-matching (induction) and by previous-token score;
- path patching: from the top previous-token head to the top induction head (by prefix-matching),
  noising, when the sender sits in an earlier layer (a path needs one); otherwise the reason;
- weight block views: the top previous-token head, then the top induction head (causal order).

What the analyses run on comes from the run's task (:mod:`induction_toolkit.analysis_data`): for a
run whose inputs are not token ids (Reddy's) the task supplies the ablation sets, the patching pair,
the weight basis and its own head scores, and the token-only sections (scores, attention) are
listed in ``omitted`` with why.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .causal.heads import parse_head
from .errors import InductionToolkitError
from .patterns import AttentionPatterns, attention_patterns, default_tokens, select_heads
from .scores import HeadScores, head_label

Head = tuple[int, int]

# Section keys in the order a report presents them.
SECTION_KEYS = ("model", "scores", "attention", "causal", "weights", "dynamics")


@dataclass
class ReportOptions:
    """How the report measures things; the defaults follow ``induct score``."""

    seq_len: int = 25
    repeats: int = 4
    batch: int = 32
    seed: int = 0
    top: int = 3  # heads shown per kind in the attention patterns
    pattern_seq_len: int = 12  # a short sequence, so each pattern plot stays readable
    causal_batch: int = 16  # prompt pairs for ablation and patching (induct patch's default)


@dataclass
class PathChoice:
    """Which sender → receiver path the report patches, and why (``result`` is None when not run)."""

    sender: Head
    receiver: Head
    reason: str
    result: Any = None  # causal.PathPatchingResult

    @property
    def ran(self) -> bool:
        """Whether the path was patched (``result`` holds it)."""
        return self.result is not None


@dataclass
class CausalEvidence:
    """Zero-ablation and denoising patching of every head, and one path, on one set of prompts."""

    seq_len: int  # random tokens per copy (two copies); the task's sequence length otherwise
    n_sequences: int
    metric_kind: str  # the metric's class name, e.g. NextTokenLogProb
    ablation: Any  # causal.AblationResult
    patching: Any  # causal.PatchingResult
    path: PathChoice
    description: str = ""  # what the prompts are (analysis_data.CausalInputs.description)
    ablation_description: str = ""  # what the ablation ran on, when it differs


@dataclass
class WeightChoice:
    """The weight analysis and the heads whose block views the report shows, with why."""

    analysis: Any  # weights.WeightAnalysis
    shown: list[tuple[Head, str]]  # (head, "previous-token" | "induction")


@dataclass
class Report:
    """Result objects of one report; ``None`` sections are absent, ``omitted`` says why."""

    loaded: Any  # checkpoints.LoadedModel
    options: ReportOptions
    scores: HeadScores | None  # None when the task scores its heads itself (see omitted)
    attention: list[AttentionPatterns]
    causal: CausalEvidence | None = None
    weights: WeightChoice | None = None
    dynamics: Any = None  # dynamics.Dynamics, computed once from ``metrics``
    metrics: list[dict[str, Any]] | None = None
    run_dir: Path | None = None
    omitted: dict[str, str] = field(default_factory=dict)  # section key -> why it is absent
    notes: list[str] = field(default_factory=list)

    @property
    def model(self):
        """The loaded ``HookedTransformer``."""
        return self.loaded.model

    @property
    def title(self) -> str:
        """The page title: model name and, for a checkpoint of a run, its step."""
        name = self.model.cfg.model_name
        step = self.loaded.step
        return f"induction-toolkit report · {name}" + (f" · step {step}" if step is not None else "")

    @property
    def sections(self) -> list[str]:
        """Keys of the sections present, in order."""
        present = {"scores": self.scores, "attention": self.attention or None, "causal": self.causal,
                   "weights": self.weights, "dynamics": self.dynamics}
        return [k for k in SECTION_KEYS if present.get(k, True) is not None]

    @property
    def meta(self) -> dict[str, Any]:
        """Which model and file the report is of (JSON-ready)."""
        return {"model": self.model.cfg.model_name, "path": str(self.loaded.path),
                "step": self.loaded.step, "run_dir": str(self.run_dir) if self.run_dir else None}

    def to_dict(self) -> dict[str, Any]:
        """What the report holds (``induct report --json``, less the file it wrote)."""
        out = {"title": self.title, "sections": self.sections, "omitted": dict(self.omitted),
               "notes": list(self.notes), **self.meta}
        if self.causal is not None:
            p = self.causal.path
            out["path_patching"] = {"sender": head_label(*p.sender),
                                    "receiver": head_label(*p.receiver), "ran": p.ran,
                                    "reason": p.reason}
        return out


class SectionSkipped(InductionToolkitError):
    """A section does not apply to this model; the message says why (listed in the report)."""


ProgressCallback = Callable[[str], None]


def build_report(model_or_run: Any, *, options: ReportOptions | None = None,
                 step: int | None = None, config: Any = None, device: str | None = None,
                 run_dir: str | Path | None = None,
                 on_section: ProgressCallback | None = None) -> Report:
    """The report of a checkpoint file or run directory (a path), a ``LoadedModel`` or a model.

    A path to a run directory adds its training dynamics; pass ``run_dir`` with a loaded model to
    do the same. ``on_section(key)`` is called before each costly step (for progress display).
    """
    from .analysis_data import AnalysisData, analysis_data, token_causal_inputs
    from .run_dir import is_run_dir

    if isinstance(model_or_run, (str, Path)):
        data = analysis_data(model_or_run, config=config, device=device, step=step)
        loaded = data.loaded
        if run_dir is None and is_run_dir(model_or_run):
            run_dir = model_or_run
    else:
        if hasattr(model_or_run, "model"):  # a checkpoints.LoadedModel
            loaded = model_or_run
        else:  # a bare HookedTransformer: nothing is known about how it was made
            from .checkpoints import LoadedModel

            loaded = LoadedModel(model_or_run, path="(in memory)", source="in-memory")
        data = AnalysisData(loaded, "tokens", lambda **kw: token_causal_inputs(loaded, **kw))
    options = options or ReportOptions()
    progress = on_section or (lambda key: None)

    progress("scoring")
    if data.task_scores is None:
        scores, notes = _scores(loaded, options)
        roles = _roles(scores)
    else:  # the task scores its own heads; the token-only sections say why they are absent
        scores, notes = None, list(loaded.notes)
        task_scores = data.task_scores(options.batch, options.seed)
        roles = {kind: parse_head(task_scores[f"{kind}_head"], loaded.model.cfg.n_layers,
                                  loaded.model.cfg.n_heads) for kind in ("previous_token", "induction")}
        notes.append("scores ({}): ".format(data.task) + "; ".join(
            f"{h['head']} previous-token {h['previous_token']:.3f}, induction {h['induction']:.3f}"
            for h in task_scores["heads"]) + " (uniform attention: previous-token "
            f"{task_scores['chance']['previous_token']:.3f}, induction "
            f"{task_scores['chance']['induction']:.3f})")
    report = Report(loaded, options, scores, [], run_dir=Path(run_dir) if run_dir else None,
                    notes=notes, omitted=dict(data.omitted))
    progress("attention")
    if scores is not None:
        report.attention = _attention(loaded, scores, options)
    progress("causal")
    report.causal = _causal(loaded, data, roles, options, report.notes)
    progress("weights")
    report.weights = _weights(loaded.model, roles, report.notes, data.basis)
    progress("dynamics")
    if "dynamics" not in report.omitted:
        try:
            report.metrics, report.dynamics = _dynamics(report.run_dir, report.notes)
        except SectionSkipped as exc:
            report.omitted["dynamics"] = str(exc)
    return report


def _scores(loaded, options: ReportOptions) -> tuple[HeadScores, list[str]]:
    from .scores import score_model, scoring_task

    task, notes = scoring_task(loaded.model, seq_len=options.seq_len, repeats=options.repeats,
                               bos_token_id=loaded.bos_token_id, exclude=loaded.special_token_ids)
    scores = score_model(loaded.model, task=task, batch=options.batch, seed=options.seed)
    return scores, list(loaded.notes) + notes + list(scores.notes)


def _attention(loaded, scores: HeadScores, options: ReportOptions) -> list[AttentionPatterns]:
    tokens = default_tokens(loaded.model, seq_len=options.pattern_seq_len, repeats=2,
                            bos_token_id=loaded.bos_token_id, exclude=loaded.special_token_ids,
                            seed=options.seed)
    return [attention_patterns(loaded.model, tokens, select_heads(scores, kind, options.top),
                               bos_token_id=loaded.bos_token_id, title=title)
            for kind, title in (("induction", "Top induction heads (by prefix-matching)"),
                                ("previous_token", "Top previous-token heads"))]


def _roles(scores: HeadScores) -> dict[str, Head]:
    """The top previous-token head and the top induction head (by prefix-matching)."""
    (lp, hp, _), = scores.top_heads("previous_token", k=1)
    (li, hi, _), = scores.top_heads("prefix_matching", k=1)
    return {"previous_token": (lp, hp), "induction": (li, hi)}


def choose_path(scores: HeadScores | dict[str, Head], by: str = "prefix-matching") -> PathChoice:
    """The report's path: top previous-token head → top induction head, if it can be a path.

    ``scores``: the head scores, or the two heads (``previous_token``, ``induction``) chosen ``by``
    a task's own score.
    """
    roles = scores if isinstance(scores, dict) else _roles(scores)
    sender, receiver = roles["previous_token"], roles["induction"]
    (lp, _), (li, _) = sender, receiver
    path = f"{head_label(*sender)} → {head_label(*receiver)}"
    if lp < li:
        return PathChoice(sender, receiver,
                          f"{path}: the top previous-token head feeds the top induction head "
                          f"(by {by}) from an earlier layer; an induction circuit acts "
                          "through the key (K-composition)")
    return PathChoice(sender, receiver,
                      f"not run: the top previous-token head and the top induction head ({path}) "
                      "are not in increasing layers, so no path joins them")


def _causal(loaded, data, roles: dict[str, Head], options: ReportOptions,
            notes: list[str]) -> CausalEvidence:
    from .causal import ablate_heads_on, patch_heads, path_patch

    model = loaded.model
    # a task's own sets (one label per sequence) are cheap and their accuracies need more than
    # causal_batch sequences: they get the scoring batch
    inputs = data.causal(seq_len=options.seq_len, repeats=2, seed=options.seed,
                         batch=options.causal_batch if data.task == "tokens" else options.batch)
    metric = inputs.metric_of("logprob")
    ablation = ablate_heads_on(model, inputs.ablation_inputs, inputs.ablation, method="zero",
                               seed=options.seed)
    patching = patch_heads(model, inputs.clean, inputs.corrupted, metric)
    path = choose_path(roles, by="prefix-matching" if data.task == "tokens" else
                       f"the {data.task} task's induction score")
    if path.sender[0] < path.receiver[0]:
        path.result = path_patch(model, inputs.clean, inputs.corrupted, metric, path.sender,
                                 path.receiver, direction="noising")
    notes.extend(f"causal: {n}" for n in inputs.notes + inputs.patch_notes + ablation.notes
                 + patching.notes)
    return CausalEvidence(int(inputs.clean.shape[1]) if data.task != "tokens" else inputs.data["seq_len"],
                          int(inputs.clean.shape[0]), type(metric).__name__, ablation, patching, path,
                          description=inputs.description,
                          ablation_description=inputs.ablation_description)


def _weights(model, roles: dict[str, Head], notes: list[str], basis: Any = None) -> WeightChoice:
    from .weights import analyze_weights

    analysis = analyze_weights(model, basis=basis)
    shown: list[tuple[Head, str]] = []
    for kind, why in (("previous_token", "previous-token"), ("induction", "induction")):
        if roles[kind] not in [head for head, _ in shown]:
            shown.append((roles[kind], why))
    notes.extend(f"weights: {n}" for n in analysis.notes)
    return WeightChoice(analysis, shown)


def _dynamics(run_dir: Path | None, notes: list[str]):
    if run_dir is None:
        raise SectionSkipped("the report is of a checkpoint file, not a training run directory")
    from .dynamics import run_dynamics
    from .run_dir import read_metrics

    try:
        dyn = run_dynamics(run_dir)  # what `induct dynamics` reports, computed once
    except InductionToolkitError as exc:  # too few evaluations: say so instead of failing
        raise SectionSkipped(str(exc)) from None
    notes.extend(f"dynamics: {n}" for n in dyn.notes)
    return read_metrics(run_dir), dyn  # the rows its figures draw

