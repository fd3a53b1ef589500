import warnings

import pytest
import torch

from induction_toolkit.errors import ConfigError
from induction_toolkit.models import (PRESETS, build_model, config_from_dict, config_to_dict,
                                      preset_config)


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_build_and_round_trip(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the one warning is silenced inside
        model = build_model(name, seed=0, device="cpu")
    d = config_to_dict(model.cfg)
    import json
    assert json.loads(json.dumps(d)) == d  # JSON only: no dtypes, no numpy scalars
    assert config_to_dict(config_from_dict(d)) == d
    logits = model(torch.zeros(1, 5, dtype=torch.long))
    assert logits.shape == (1, 5, model.cfg.d_vocab_out)


def test_blog_preset_matches_the_blog_post():
    cfg = preset_config("blog-4l")
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_ctx) == (4, 256, 4, 64)
    assert not cfg.attn_only


def test_attn_only_presets_have_no_mlp():
    for name in ("attn-only-1l", "attn-only-2l", "attn-only-4l"):
        model = build_model(name, device="cpu")
        assert model.cfg.attn_only and not any("mlp" in k for k in model.state_dict())


def test_seed_fixes_weights_without_touching_global_rng():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model("attn-only-1l", seed=7, device="cpu")
    after = torch.rand(1)
    b = build_model("attn-only-1l", seed=7, device="cpu")
    c = build_model("attn-only-1l", seed=8, device="cpu")
    assert torch.equal(before, after)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.W_Q, c.W_Q)


def test_unknown_preset_is_a_user_error():
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        preset_config("nope")


def test_config_from_dict_rejects_garbage():
    with pytest.raises(ConfigError):
        config_from_dict({"n_layers": 1})
    with pytest.raises(ConfigError):
        config_from_dict([1, 2])
    with pytest.raises(ConfigError, match="dtype"):
        config_from_dict({**config_to_dict(preset_config("attn-only-1l")), "dtype": "float99"})


def test_overrides_rederive_dependent_fields():
    cfg = preset_config("attn-only-2l", d_vocab=300, d_model=96)
    assert cfg.d_vocab_out == 300  # not the preset's 64
    assert cfg.d_head == 96 // 4 and cfg.attn_scale == pytest.approx((96 // 4) ** 0.5)
    assert cfg.initializer_range == pytest.approx(0.8 / 96 ** 0.5)


def test_blog_preset_draws_unit_variance_embeddings_and_others_keep_transformerlens_init():
    blog = build_model("blog-4l", seed=0, device="cpu")
    # 64×256 and 64×256 draws: the sample std of N(0, 1) is within a few percent of 1
    assert abs(float(blog.embed.W_E.detach().std()) - 1.0) < 0.05
    assert abs(float(blog.pos_embed.W_pos.detach().std()) - 1.0) < 0.05
    assert abs(float(blog.blocks[0].mlp.W_in.detach().std()) - 0.8 / 256 ** 0.5) < 0.005  # untouched
    small = build_model("attn-only-2l", seed=0, device="cpu")
    assert abs(float(small.embed.W_E.detach().std()) - 0.8 / 64 ** 0.5) < 0.01
    again = build_model("blog-4l", seed=0, device="cpu")
    assert torch.equal(again.embed.W_E, blog.embed.W_E)
    chosen = build_model(preset_config("attn-only-2l"), seed=0, device="cpu", embed_init_std=0.5)
    assert abs(float(chosen.embed.W_E.detach().std()) - 0.5) < 0.05
    assert torch.equal(chosen.blocks[0].attn.W_Q, small.blocks[0].attn.W_Q)  # only embeddings move
