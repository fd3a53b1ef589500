"""Head specifications as users write them (``L1H2``, ``L1H2,L0H1``, ``L0H1:L1H2``), checked early.

Every parser raises ``HeadSpecError`` with one line that names the bad piece and the model's range,
so the CLI can print it and exit 2 instead of failing deep inside a forward pass.
"""

import re

from ..errors import HeadSpecError
from ..scores import head_label

Head = tuple[int, int]

_HEAD = re.compile(r"^L(\d+)H(\d+)$", re.IGNORECASE)
EXAMPLE = "L1H2"


def parse_head(spec: str, n_layers: int, n_heads: int) -> Head:
    """``"L1H2"`` → ``(1, 2)``, checked against the model's shape."""
    text = spec.strip()
    m = _HEAD.match(text)
    if not m:
        raise HeadSpecError(f"'{spec}' is not a head; write L<layer>H<head>, e.g. {EXAMPLE}")
    layer, head = int(m.group(1)), int(m.group(2))
    if layer >= n_layers:
        raise HeadSpecError(f"{head_label(layer, head)}: layer {layer} is out of range; the model "
                            f"has {n_layers} layer{'s' if n_layers != 1 else ''} (0–{n_layers - 1})")
    if head >= n_heads:
        raise HeadSpecError(f"{head_label(layer, head)}: head {head} is out of range; the model "
                            f"has {n_heads} head{'s' if n_heads != 1 else ''} per layer (0–{n_heads - 1})")
    return layer, head


def parse_heads(spec: str, n_layers: int, n_heads: int) -> list[Head]:
    """``"L1H2,L0H1"`` → ``[(1, 2), (0, 1)]`` in the order given, duplicates dropped."""
    parts = [p for p in spec.split(",")]
    if not spec.strip() or any(not p.strip() for p in parts):
        raise HeadSpecError(f"'{spec}' is not a list of heads; write e.g. L1H2,L0H1")
    heads: list[Head] = []
    for part in parts:
        h = parse_head(part, n_layers, n_heads)
        if h not in heads:
            heads.append(h)
    return heads


def parse_path(spec: str, n_layers: int, n_heads: int) -> tuple[Head, Head]:
    """``"L0H1:L1H2"`` → ``((0, 1), (1, 2))``: sender, receiver; the sender must come first."""
    parts = spec.split(":")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise HeadSpecError(f"'{spec}' is not a path; write SENDER:RECEIVER, e.g. L0H1:{EXAMPLE}")
    sender = parse_head(parts[0], n_layers, n_heads)
    receiver = parse_head(parts[1], n_layers, n_heads)
    if sender[0] >= receiver[0]:
        raise HeadSpecError(f"path {head_label(*sender)}:{head_label(*receiver)}: the sender must sit "
                            "in an earlier layer than the receiver")
    return sender, receiver
