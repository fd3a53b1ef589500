import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from induction_toolkit.errors import ConfigError
from induction_toolkit.tasks import RepeatedTokensConfig, repeated_tokens


@settings(max_examples=40, deadline=None)
@given(d_vocab=st.integers(4, 80), seq_len=st.integers(1, 30), repeats=st.integers(2, 5),
       bos=st.booleans(), seed=st.integers(0, 10_000))
def test_repeated_structure(d_vocab, seq_len, repeats, bos, seed):
    cfg = RepeatedTokensConfig(d_vocab=d_vocab, seq_len=seq_len, repeats=repeats,
                               bos_token_id=d_vocab - 1 if bos else None, exclude=(0,))
    x = repeated_tokens(cfg, 5, seed=seed)
    assert x.shape == (5, seq_len * repeats + bos) == (5, cfg.total_len)
    body = x[:, int(bos):]
    segs = body.reshape(5, repeats, seq_len)
    assert (segs == segs[:, :1]).all()
    if bos:
        assert (x[:, 0] == d_vocab - 1).all()
        assert not (body == d_vocab - 1).any()
    assert not (body == 0).any()
    allowed = d_vocab - 1 - bos
    if seq_len <= allowed:  # drawn without replacement inside a segment
        for row in segs[:, 0]:
            assert len(set(row.tolist())) == seq_len
    assert torch.equal(x, repeated_tokens(cfg, 5, seed=seed))


def test_generator_streams_differ_and_are_reproducible():
    cfg = RepeatedTokensConfig(d_vocab=50, seq_len=10)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a1, a2 = repeated_tokens(cfg, 4, generator=g1), repeated_tokens(cfg, 4, generator=g1)
    assert not torch.equal(a1, a2)
    assert torch.equal(a1, repeated_tokens(cfg, 4, generator=g2))


@pytest.mark.parametrize("kwargs", [dict(seq_len=0), dict(repeats=1), dict(d_vocab=1)])
def test_bad_task_configs(kwargs):
    with pytest.raises(ConfigError):
        RepeatedTokensConfig(**{"d_vocab": 10, **kwargs})


def test_round_trip():
    cfg = RepeatedTokensConfig(d_vocab=10, seq_len=4, repeats=3, bos_token_id=9, exclude=(1, 2))
    assert RepeatedTokensConfig.from_dict(cfg.to_dict()) == cfg
