"""The library's jaxtyping annotations are checked at runtime under pytest.

pyproject's ``addopts`` pass ``--jaxtyping-packages=induction_toolkit,beartype.beartype``, so every
annotated function of ``induction_toolkit`` imported by a test checks its arguments and return
value (shapes, dtypes, plain types) with beartype. These tests fail if that is switched off: each
wrong call below runs without error when nothing checks it.
"""

import pytest
import torch
from jaxtyping import TypeCheckError


def test_tensor_shapes_are_checked(random_2l):
    from induction_toolkit.viz.attention import token_labels

    assert token_labels(random_2l, torch.tensor([3, 4])) == ["3", "4"]
    with pytest.raises(TypeCheckError):
        token_labels(random_2l, torch.tensor([[3], [4]]))  # [pos, 1], annotated [pos]


def test_tensor_dtypes_are_checked(random_2l):
    from induction_toolkit.viz.attention import token_labels

    with pytest.raises(TypeCheckError):
        token_labels(random_2l, torch.tensor([3.0, 4.0]))  # annotated Int


def test_plain_annotations_are_checked():
    from induction_toolkit.causal.batched import z_name

    assert z_name(1) == "blocks.1.attn.hook_z"
    with pytest.raises(TypeCheckError):
        z_name("1")
