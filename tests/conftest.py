import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def reproducibility():
    """Seed every RNG so each test sees the same numbers whatever ran before it."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def planted():
    from induction_toolkit.planted import planted_induction_model

    return planted_induction_model()


@pytest.fixture(scope="session")
def random_2l():
    from induction_toolkit.models import build_model

    return build_model("attn-only-2l", seed=0, device="cpu")


# Training settings of the shared trained model (issue 4; evaluated every 10 steps so the dynamics
# tests can resolve the induction transition, issue 13). Kept here so tests that need the
# numbers (e.g. the step count) read them instead of copying them.
TRAINED_2L_CONFIG = dict(preset="attn-only-2l", task="repeated", steps=750, lr=3e-3,
                         batch_size=32, seed=0, eval_every=10, log_checkpoints=8,
                         checkpoint_every=250, device="cpu")


@pytest.fixture(scope="session")
def trained_2l(tmp_path_factory):
    """attn-only-2l trained on repeated tokens (varying segment length) until induction forms.

    Attributes: ``model`` (eval mode, cpu), ``scores`` (HeadScores on the run's own BOS),
    ``induction_head`` / ``previous_token_head`` ((layer, head) by prefix-matching in layer 1 /
    previous-token score in layer 0), ``run_dir`` (checkpoints + metrics.jsonl), ``result``.
    """
    from types import SimpleNamespace

    from induction_toolkit.scores import score_model, scoring_task
    from induction_toolkit.training import TrainConfig, train

    run_dir = tmp_path_factory.mktemp("trained_2l") / "run"
    with torch.random.fork_rng(devices=[]):
        result = train(TrainConfig(**TRAINED_2L_CONFIG), run_dir, handle_signals=False)
    model = result.model.eval()
    task, _ = scoring_task(model, bos_token_id=result.task.bos_token_id,
                           exclude=result.task.special_tokens)
    scores = score_model(model, task=task, batch=32, seed=0)
    layer1 = int(scores.prefix_matching[1].argmax())
    layer0 = int(scores.previous_token[0].argmax())
    return SimpleNamespace(model=model, scores=scores, induction_head=(1, layer1),
                           previous_token_head=(0, layer0), run_dir=run_dir, result=result,
                           task=result.task, bos_token_id=result.task.bos_token_id)
