"""``induct score``: a per-head table of induction-related scores."""

from typing import Annotated, Optional

import typer

from ._common import (ConfigFile, NHeads, model_config, DeviceOpt, JsonFlag, ModelPath, RunStep, SegmentLength,
                      TokenSeed, check_scoring_options, print_json, stdout)


def score(
    path: ModelPath,
    json_out: JsonFlag = False,
    seq_len: SegmentLength = 25,
    repeats: Annotated[int, typer.Option(help="How many times the segment repeats.")] = 4,
    batch: Annotated[int, typer.Option(help="Number of sequences scored.")] = 32,
    seed: TokenSeed = 0,
    config: ConfigFile = None,
    n_heads: NHeads = None,
    step: RunStep = None,
    device: DeviceOpt = None,
    dtype: Annotated[Optional[str], typer.Option(help="float32 (default for pretrained models), float16 or bfloat16.")] = None,
    low_memory: Annotated[bool, typer.Option(help="One sequence at a time, logits a block of positions at a time: peak memory ≈ the weights plus one layer's activations.")] = False,
) -> None:
    """Score every attention head: previous-token, prefix-matching, duplicate, copying, OV eigen.

    Segment lengths vary per sequence (--seq-len/2 to --seq-len); "—" marks a value that cannot be
    computed (named in the notes).
    """
    from induction_toolkit.analysis_data import analysis_data
    from induction_toolkit.models import config_summary
    from induction_toolkit.batching import score_fitting
    from induction_toolkit.scores import finite, fmt_score, scoring_task

    check_scoring_options(seq_len, repeats, batch)
    data = analysis_data(path, config=model_config(config, n_heads), device=device, step=step, dtype=dtype)
    if data.task_scores is not None:  # continuous inputs: the task scores its heads on its own sequences
        return _print_task_scores(data.task_scores(batch, seed), name=data.task, path=path, step=step,
                                  batch=batch, json_out=json_out)
    loaded = data.loaded
    task, notes = scoring_task(loaded.model, seq_len=seq_len, repeats=repeats,
                               bos_token_id=loaded.bos_token_id,
                               exclude=loaded.special_token_ids)
    result = score_fitting(loaded.model, task=task, batch=batch, seed=seed, low_memory=low_memory,
                           chunk=1 if low_memory else None)
    result.notes[:0] = loaded.notes + notes
    model_info = {**config_summary(loaded.model.cfg), "path": str(path), "source": loaded.source,
                  "step": loaded.step}
    if json_out:
        print_json({"model": model_info, **result.to_dict()})
        return
    title = f"{model_info['name']} · {path}" + (f" · step {loaded.step}" if loaded.step is not None else "")
    stdout.print(result.to_table(title=title))
    lo, hi = result.data["segment_length_range"]
    stdout.print(f"ICL score {fmt_score(finite(result.icl_score), '+.3f')} "
                 f"({result.icl_window_text()}; segments of {lo}–{hi} tokens × "
                 f"{result.data['repeats']}, padded to {result.data['n_tokens']} tokens)")
    stdout.print(result.verdict(), style="bold")
    for note in result.notes:
        stdout.print(f"note: {note}", style="dim", markup=False)


def _print_task_scores(result: dict, *, name: str, path: str, step: Optional[int], batch: int, json_out: bool) -> None:
    """A task's own per-head scores (``AnalysisData.task_scores``: Reddy's on its in-context set)."""
    from rich.table import Table

    if json_out:
        print_json({"model": {"name": name, "path": str(path), "step": step}, **result})
        return
    table = Table(title=f"{name} · {path}")
    for col in ("head", "previous-token", "induction"):
        table.add_column(col)
    for r in result["heads"]:
        table.add_row(r["head"], f"{r['previous_token']:.3f}", f"{r['induction']:.3f}")
    stdout.print(table)
    stdout.print(f"previous-token head {result['previous_token_head']}, induction head "
                 f"{result['induction_head']} (uniform attention: previous-token "
                 f"{result['chance']['previous_token']:.3f}, induction {result['chance']['induction']:.3f}; "
                 f"on {batch} {result.get('sequences', 'sequences of the task')})", markup=False)
