"""``induct planted``: write the hand-planted induction circuit as a checkpoint."""

from pathlib import Path
from typing import Annotated

import typer

from ._common import stderr


def planted(
    out: Annotated[Path, typer.Argument(help="Where to write the .safetensors checkpoint.")],
    seed: Annotated[int, typer.Option(help="Seed of the small random weights of the other heads.")] = 0,
) -> None:
    """Write a model whose L0H1 is a previous-token head and L1H2 an induction head, set by hand."""
    from induction_toolkit.checkpoints import save_model
    from induction_toolkit.errors import InductionToolkitError
    from induction_toolkit.planted import planted_induction_model

    if out.is_dir():
        raise InductionToolkitError(f"{out} is a directory; give a file path such as planted.safetensors")
    pc = planted_induction_model(seed=seed)
    save_model(pc.model, out, task=pc.task_dict(), seed=seed,
               extra={"planted": {"previous_token_head": list(pc.previous_token_head),
                                  "induction_head": list(pc.induction_head)}})
    stderr.print(f"wrote {out}: previous-token head L0H1, induction head L1H2")
