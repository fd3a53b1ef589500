"""``induct patch``: activation, attribution and path patching from clean into corrupted prompts."""

from typing import Annotated, Optional

import typer

from ._common import (ConfigFile, NHeads, model_config, DeviceOpt, JsonFlag, ModelPath, RunStep, SegmentLength,
                      TokenSeed, print_json, stdout)


def patch(
    path: ModelPath,
    method: Annotated[str, typer.Option(help="exact (batched activation patching) or attribution (one backward).")] = "exact",
    by_position: Annotated[bool, typer.Option("--by-position", help="Also patch each head at each position.")] = False,
    path_spec: Annotated[Optional[str], typer.Option("--path", help="SENDER:RECEIVER, e.g. L0H1:L1H2: patch only that path, into the receiver's q, k and v in turn.")] = None,
    direction: Annotated[Optional[str], typer.Option(help="denoising (clean into corrupted; default for heads) or noising (corrupted into clean; default for --path).")] = None,
    metric: Annotated[str, typer.Option(help="logprob (of the correct next token) or logit (its logit minus the mean logit), over the repeated copy.")] = "logprob",
    json_out: JsonFlag = False,
    top: Annotated[int, typer.Option(help="With --by-position: rows of the (head, position) table.")] = 20,
    seq_len: SegmentLength = 25,
    repeats: Annotated[int, typer.Option(help="How many times the segment repeats (all but the last copy are corrupted).")] = 2,
    batch: Annotated[int, typer.Option(help="Number of prompt pairs.")] = 32,
    seed: TokenSeed = 0,
    config: ConfigFile = None,
    n_heads: NHeads = None,
    step: RunStep = None,
    device: DeviceOpt = None,
) -> None:
    """Patch each head's output from clean into corrupted prompts; 1 = as clean, 0 = as corrupted."""
    from induction_toolkit.causal import (METRIC_KINDS, attribute_heads, parse_path, patch_heads,
                                          path_patch)
    from induction_toolkit.causal.patching import check_direction, n_patch_copies
    from induction_toolkit.errors import ConfigError

    from ._causal import load_for_causal, model_info, progress_bar

    if method not in ("exact", "attribution"):
        raise ConfigError(f"--method must be exact or attribution, got '{method}'")
    if metric not in METRIC_KINDS:
        raise ConfigError(f"--metric must be one of {', '.join(METRIC_KINDS)}, got '{metric}'")
    if path_spec is not None and (method != "exact" or by_position):
        raise ConfigError("--path runs exact path patching; drop --method attribution / --by-position")
    direction = direction or ("noising" if path_spec is not None else "denoising")
    check_direction(direction)
    if top < 1:
        raise ConfigError(f"--top must be ≥ 1, got {top}")
    loaded, pair, notes = load_for_causal(path, config=model_config(config, n_heads), step=step,
                                          device=device, seq_len=seq_len, repeats=repeats,
                                          batch=batch, seed=seed)
    notes = notes + pair.patch_notes
    model, cfg = loaded.model, loaded.model.cfg
    fn = pair.metric_of(metric)
    info = model_info(loaded, path)

    if path_spec is not None:
        sender, receiver = parse_path(path_spec, cfg.n_layers, cfg.n_heads)
        result = path_patch(model, pair.clean, pair.corrupted, fn, sender, receiver,
                            direction=direction)
        result.data, result.notes[:0] = {**pair.data, **result.data}, notes
        if json_out:
            print_json({"model": info, **result.to_dict()})
            return
        d = result.to_dict()
        stdout.print(result.to_table(title=f"path patching {d['path']} ({direction}) · {info['name']}"))
        stdout.print(f"{d['path']} acts mostly through the receiver's {result.dominant} input "
                     f"(clean {result.metric} {result.clean_metric:.3f}, corrupted "
                     f"{result.corrupted_metric:.3f})", style="bold")
    else:
        if method == "exact":
            total = n_patch_copies(model, pair.clean.shape[1], by_position)
            with progress_bar("patching", total) as advance:
                result = patch_heads(model, pair.clean, pair.corrupted, fn, by_position=by_position,
                                     direction=direction, progress=advance)
        else:
            result = attribute_heads(model, pair.clean, pair.corrupted, fn,
                                     by_position=by_position, direction=direction)
        result.data, result.notes[:0] = {**pair.data, **result.data}, notes
        if json_out:
            print_json({"model": info, **result.to_dict()})
            return
        stdout.print(result.to_table(title=f"{method} patching ({direction}) · {info['name']} · {path}"))
        if by_position:
            stdout.print(result.positions_table(top=top, title=f"top {top} (head, position) patches"))
        l, h, e = result.ranking()[0]
        stdout.print(f"largest effect: L{l}H{h} ({e:+.3f}); clean {result.metric} "
                     f"{result.clean_metric:.3f}, corrupted {result.corrupted_metric:.3f}",
                     style="bold")
    for note in result.notes:
        stdout.print(f"note: {note}", style="dim", markup=False)
