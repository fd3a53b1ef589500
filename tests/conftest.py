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
