"""``induct weights``: read the circuit off the weights alone (block view, OV, composition)."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import (ConfigFile, NHeads, model_config, JsonFlag, ModelPath, RunStep, print_json, stderr,
                      stdout)


def weights(
    path: ModelPath,
    out: Annotated[Optional[Path], typer.Option(help="Directory for layer_<l>.png, weights.html and weights.json.")] = None,
    json_out: JsonFlag = False,
    max_tokens: Annotated[int, typer.Option(help="Token blocks use all tokens up to this many, else a seeded sample.")] = 256,
    max_positions: Annotated[int, typer.Option(help="Position blocks use at most this many leading positions.")] = 2048,
    partners: Annotated[int, typer.Option(help="Virtual K-composition blocks per layer-≥1 head (strongest sources).")] = 4,
    baseline_samples: Annotated[int, typer.Option(help="Random head pairs averaged for the composition baseline.")] = 200,
    top: Annotated[Optional[int], typer.Option(help="List only the strongest N pairs per composition kind in --json.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the token sample and the random baseline.")] = 0,
    config: ConfigFile = None,
    n_heads: NHeads = None,
    step: RunStep = None,
    device: Annotated[Optional[str], typer.Option(help="cpu or cuda (default: cpu; weights are read on the CPU anyway).")] = None,
) -> None:
    """Per head: QK circuit in token/position bases (sub-diagonal score), OV eigen score, Q/K/V composition."""
    from rich.progress import Progress

    from induction_toolkit.analysis_data import analysis_data
    from induction_toolkit.atomic import atomic_write_text
    from induction_toolkit.errors import ConfigError
    from induction_toolkit.models import config_summary
    from induction_toolkit.weights import analyze_weights
    from induction_toolkit.weights.figures import write_weight_figures

    if top is not None and top < 0:
        raise ConfigError(f"--top must be ≥ 0, got {top}")
    if out is not None and out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    # a task with vector inputs (Reddy's) supplies the basis token/position blocks are read in
    data = analysis_data(path, config=model_config(config, n_heads), device=device or "cpu", step=step)
    loaded = data.loaded
    with Progress(console=stderr, transient=True, disable=json_out) as bar:
        task = bar.add_task("reading weights", total=None)

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = analyze_weights(loaded.model, max_tokens=max_tokens, max_positions=max_positions,
                                 partners=partners, baseline_samples=baseline_samples, seed=seed,
                                 progress=tick, basis=data.basis)
        result.notes[:0] = loaded.notes
        model_info = {**config_summary(loaded.model.cfg), "path": str(path), "source": loaded.source,
                      "step": loaded.step}
        data = {"model": model_info, **result.to_dict(top=top)}
        if out is not None:
            bar.update(task, description="drawing figures", completed=0, total=result.n_layers)
            title = f"Weight views · {model_info['name']} · {path}"
            files = write_weight_figures(result, out, title=title, progress=tick)
            data["files"] = {k: str(v) for k, v in files.items()}
            data["files"]["json"] = str(out / "weights.json")
            atomic_write_text(out / "weights.json", _dumps(data))
    if json_out:
        print_json(data)
        return
    title = f"{model_info['name']} · {path}" + (f" · step {loaded.step}" if loaded.step is not None else "")
    stdout.print(result.to_table(title=title))
    baseline = ", ".join(f"{m} {v:.3f}" for m, v in result.baseline.items())
    stdout.print(f"composition partners: strongest pair in either direction (← reads from, → writes to), "
                 f"minus the random baseline ({baseline}; {result.baseline_samples} samples)")
    for mode, key in (("K", "k_composition"), ("Q", "q_composition"), ("V", "v_composition")):
        if data[key]:
            best = data[key][0]
            stdout.print(f"top {mode}-composition: L{best['from'][0]}H{best['from'][1]} → "
                         f"L{best['to'][0]}H{best['to'][1]} {best['score']:+.3f}")
    for note in result.notes:
        stdout.print(f"note: {note}", style="dim", markup=False)
    if out is not None:
        stdout.print(f"wrote {result.n_layers} layer figures and {out / 'weights.html'}")


def _dumps(data: dict) -> str:
    import json

    return json.dumps(data, indent=2, allow_nan=False) + "\n"
