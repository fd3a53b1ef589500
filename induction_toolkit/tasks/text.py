"""Natural text available offline: the Python standard library's own ``.py`` sources, as bytes.

Nothing is downloaded. The corpus is the sorted list of ``.py`` files under the running
interpreter's stdlib directory (``sysconfig``), concatenated up to ``max_bytes``; it therefore
depends on the Python version, which ``to_dict`` records. Vocabulary: 256 byte values; no BOS.
"""

import dataclasses
import sys
import sysconfig
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Int

from ..errors import ConfigError


@lru_cache(maxsize=4)
def stdlib_corpus(max_bytes: int) -> np.ndarray:
    """The stdlib's ``.py`` sources as one uint8 array (deterministic file order)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts or "test" in path.parts:
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        parts.append(data)
        total += len(data)
        if total >= max_bytes:
            break
    if total == 0:
        raise ConfigError(f"no Python sources found under {root} for the text task")
    return np.frombuffer(b"".join(parts)[:max_bytes], dtype=np.uint8)


@dataclass(frozen=True)
class TextConfig:
    """The byte-level text task: windows of this Python's standard-library source (d_vocab 256)."""

    seq_len: int = 64
    max_bytes: int = 4_000_000
    eval_fraction: float = 0.05  # the corpus tail held out for evaluation
    python_version: str = field(default=f"{sys.version_info.major}.{sys.version_info.minor}")
    name: str = "text"
    d_vocab: int = 256
    bos_token_id: int | None = None

    def __post_init__(self) -> None:
        if self.seq_len < 4:
            raise ConfigError(f"seq_len must be ≥ 4, got {self.seq_len}")
        if self.d_vocab != 256:
            raise ConfigError("the text task is byte-level: d_vocab is 256")

    @property
    def special_tokens(self) -> tuple[int, ...]:
        """No special tokens: every byte is content."""
        return ()

    def _split(self) -> tuple[np.ndarray, np.ndarray]:
        corpus = stdlib_corpus(self.max_bytes)
        cut = int(len(corpus) * (1 - self.eval_fraction))
        return corpus[:cut], corpus[cut:]

    def _windows(self, data: np.ndarray, batch: int, generator: torch.Generator) -> torch.Tensor:
        if len(data) <= self.seq_len:
            raise ConfigError(f"the text corpus ({len(data)} bytes) is shorter than one sequence")
        starts = torch.randint(0, len(data) - self.seq_len, (batch,), generator=generator)
        idx = starts[:, None] + torch.arange(self.seq_len)[None, :]
        return torch.from_numpy(data[idx.numpy()].astype(np.int64))

    def sample(self, batch: int, generator: torch.Generator,
               step: int = 0) -> Int[torch.Tensor, "batch pos"]:
        """A training batch ``[batch, seq_len]`` of random byte windows from the training split."""
        return self._windows(self._split()[0], batch, generator)

    def eval_batch(self, batch: int, seed: int) -> tuple[Int[torch.Tensor, "batch pos"], int]:
        """Held-out windows; the "second half" is simply the later half of each window."""
        return self._windows(self._split()[1], batch, torch.Generator().manual_seed(seed)), \
            self.seq_len // 2

    def heldout_sample(self, batch: int, seed: int) -> Int[torch.Tensor, "batch pos"]:
        """Windows ``[batch, seq_len]`` of the held-out corpus tail, drawn as ``sample`` draws them."""
        return self._windows(self._split()[1], batch, torch.Generator().manual_seed(seed))

    def to_dict(self) -> dict:
        """The task's settings as a JSON-ready dict."""
        return dataclasses.asdict(self)
