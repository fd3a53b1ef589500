"""`induct reproduce blog --quick`: the scaled-down blog run crosses the induction transition.

One seed of the quick configuration (about a minute on two cores), asserted on the science the blog
reports: an induction head forms (in a layer above the first, where a previous-token head can feed
it), the repeated half's loss falls with it, and the loss follows the induction score with a lag.
"""

import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from induction_toolkit.training import read_metrics


@pytest.mark.slow
def test_quick_blog_reproduction_shows_the_induction_transition(tmp_path):
    r = CliRunner().invoke(app, ["reproduce", "blog", "--quick", "--seeds", "0", "--out",
                                 str(tmp_path), "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    (seed,) = result["seeds"]
    assert seed["layer"] >= 1
    assert seed["final_prefix_matching"] > 0.5  # chance on 62 content tokens is ≈ 0.05
    assert 0 < seed["onset_step"] < 1000
    window = seed["phase_change"]
    assert window["start_step"] <= seed["onset_step"] <= window["end_step"]
    assert seed["lag"]["r2"] > 0.7

    rows = read_metrics(seed["run_dir"])
    before = [r for r in rows if r["step"] < window["start_step"]]
    assert before, "the transition must not start at step 0"
    # in-context benefit (first-half minus repeated-half loss): under 1 nat before the transition
    # (what bag-of-tokens guessing gives), over 2 nats once the induction head copies
    benefit = [r["loss_first_half"] - r["loss_repeated_half"] for r in (before[-1], rows[-1])]
    assert benefit[0] < 1.0 and benefit[1] > 2.0
    assert (tmp_path / "blog_seeds.png").stat().st_size > 0
