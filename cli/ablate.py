"""``induct ablate``: what ablating each head does to the loss on repeated tokens."""

from typing import Annotated, Optional

import typer

from ._common import (ConfigFile, NHeads, model_config, DeviceOpt, JsonFlag, ModelPath, RunStep, SegmentLength,
                      print_json, stdout)


def ablate(
    path: ModelPath,
    method: Annotated[str, typer.Option(help="zero, mean (over the batch, per position) or resample (another sequence's).")] = "zero",
    heads: Annotated[Optional[str], typer.Option(help="Ablate these heads jointly (and each alone), e.g. L1H2,L0H1.")] = None,
    json_out: JsonFlag = False,
    seq_len: SegmentLength = 25,
    repeats: Annotated[int, typer.Option(help="How many times the segment repeats.")] = 2,
    batch: Annotated[int, typer.Option(help="Number of sequences.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of the random tokens and of resampling.")] = 0,
    config: ConfigFile = None,
    n_heads: NHeads = None,
    step: RunStep = None,
    device: DeviceOpt = None,
) -> None:
    """Ablate every head (or a set, jointly) and report the loss on the repeated and first halves.

    On a run whose task supplies its own inputs (a Reddy run): the loss on its in-context set and,
    as the control, its in-weights set, with each set's accuracy (docs/reddy.md).
    """
    from induction_toolkit.causal import ABLATION_METHODS, ablate_heads_on, parse_heads
    from induction_toolkit.errors import ConfigError

    from ._causal import load_for_causal, model_info, progress_bar

    if method not in ABLATION_METHODS:
        raise ConfigError(f"--method must be one of {', '.join(ABLATION_METHODS)}, got '{method}'")
    loaded, inputs, notes = load_for_causal(path, config=model_config(config, n_heads), step=step,
                                            device=device, seq_len=seq_len, repeats=repeats,
                                            batch=batch, seed=seed)
    cfg = loaded.model.cfg
    chosen = parse_heads(heads, cfg.n_layers, cfg.n_heads) if heads is not None else None
    n = len(chosen) + 1 if chosen else cfg.n_layers * cfg.n_heads
    with progress_bar(f"{method}-ablating heads", n) as advance:
        result = ablate_heads_on(loaded.model, inputs.ablation_inputs, inputs.ablation, method=method,
                                 heads=chosen, joint=chosen is not None, seed=seed, progress=advance)
    result.notes[:0] = notes
    info = model_info(loaded, path)
    if json_out:
        print_json({"model": info, **result.to_dict()})
        return
    stdout.print(result.to_table(title=f"{method} ablation · {info['name']} · {path}"))
    top = result.ranking()[0]
    loss, control = result.labels
    stdout.print(f"largest effect: {top['label']} raises the {loss} by "
                 f"{top['delta_loss']:+.3f} (baseline {result.baseline_loss:.3f}; {control} "
                 f"{result.baseline_first_half_loss:.3f})", style="bold", markup=False)
    for note in result.notes:
        stdout.print(f"note: {note}", style="dim", markup=False)
