"""How many sequences to push through a model at once, so scoring fits in memory.

A scoring forward pass holds, per sequence: the logits (``pos × d_vocab``, plus a float32
log-softmax of the same size), every layer's attention pattern while its hook reduces it
(``n_heads × pos²``, with masks of the same shape) and a few residual-stream-sized activations
per layer. ``auto_chunk`` divides a memory budget by that estimate; ``score_fitting`` runs
``scores.score_model`` with it and, on a CUDA out-of-memory error, halves the chunk and retries.
"""

import gc
import os

import torch
from transformer_lens import HookedTransformer

from .errors import OutOfMemoryError
from .scores import HeadScores, score_model

# Fraction of free memory a scoring pass may plan to use: estimates miss allocator slack,
# temporary copies and whatever else the process holds.
_GPU_FRACTION = 0.5
_CPU_FRACTION = 0.25
_CPU_CAP = 4 << 30


def bytes_per_sequence(model: HookedTransformer, n_tokens: int) -> int:
    """Rough peak bytes one sequence of ``n_tokens`` needs during a scoring forward pass."""
    cfg = model.cfg
    act = torch.finfo(cfg.dtype).bits // 8 if cfg.dtype.is_floating_point else 4
    logits = n_tokens * cfg.d_vocab_out * (act + 4 + 4)  # logits, a float32 copy, its log-softmax
    pattern = 4 * cfg.n_heads * n_tokens * n_tokens * max(act, 4)  # scores, pattern, float copy, masks
    width = max(cfg.d_model, cfg.d_mlp or 0, cfg.n_heads * cfg.d_head)
    resid = 8 * n_tokens * width * act
    return int(logits + pattern + resid)


def memory_budget(device: str | torch.device) -> int:
    """Bytes a scoring pass may plan on using on ``device``."""
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free * _GPU_FRACTION)
    return int(min(_available_ram() * _CPU_FRACTION, _CPU_CAP))


def _available_ram() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2 << 30


def auto_chunk(model: HookedTransformer, n_sequences: int, n_tokens: int,
               budget: int | None = None) -> int:
    """Sequences per forward pass: as many as fit the budget, at least 1, at most all."""
    if budget is None:
        budget = memory_budget(model.cfg.device or "cpu")
    per = max(1, bytes_per_sequence(model, n_tokens))
    return max(1, min(n_sequences, budget // per))


def score_fitting(model: HookedTransformer, *, chunk: int | None = None, **kwargs) -> HeadScores:
    """``score_model`` with a chunk that fits in memory; halves it on CUDA out-of-memory.

    ``chunk`` (if given) is the starting point; otherwise it is estimated by ``auto_chunk``.
    Scores do not depend on the chunk: every reduction is a sum over sequences.
    """
    task, tokens = kwargs.get("task"), kwargs.get("tokens")
    n_seq = tokens.shape[0] if tokens is not None else kwargs.get("batch", 32)
    if tokens is not None:
        n_tok = tokens.shape[1]
    elif task is not None:
        n_tok = task.prefix_len + task.seq_len * task.repeats
    else:
        n_tok = model.cfg.n_ctx
    chunk = chunk or auto_chunk(model, n_seq, n_tok)
    while True:
        try:
            result = score_model(model, chunk=chunk, **kwargs)
        except torch.OutOfMemoryError:
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if chunk == 1:
                raise OutOfMemoryError("out of memory scoring even one sequence at a time; use "
                                       "--dtype bfloat16, a shorter --seq-len, or the cpu") from None
            chunk = max(1, chunk // 2)
            continue
        result.data["chunk"] = chunk
        return result
