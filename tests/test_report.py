"""The report model: what build_report chooses and computes, before anything is drawn."""


def test_report_of_a_bare_model_holds_the_planted_circuit(planted):
    """Known answer: the planted circuit's previous-token head L0H1 feeds induction head L1H2, so
    the report patches the path L0H1 → L1H2 and finds it acts through the key."""
    from induction_toolkit.patterns import AttentionPatterns
    from induction_toolkit.report import ReportOptions, build_report

    report = build_report(planted.model, options=ReportOptions(batch=8, causal_batch=8, top=1))
    assert report.sections == ["model", "scores", "attention", "causal", "weights"]
    assert "training run" in report.omitted["dynamics"] and report.dynamics is None
    induction, previous = report.attention
    assert isinstance(induction, AttentionPatterns)
    assert induction.labels == ["L1H2"] and previous.labels == ["L0H1"]
    assert induction.patterns.shape[0] == 1 and len(induction.tokens) == induction.patterns.shape[1]
    path = report.causal.path
    assert (path.sender, path.receiver) == (planted.previous_token_head, planted.induction_head)
    assert path.ran and path.result.dominant == "k"
    assert report.causal.patching.data["engine"] == "fused_by_head"
    assert [head for head, _ in report.weights.shown] == [(0, 1), (1, 2)]
    d = report.to_dict()
    assert d["path_patching"] == {"sender": "L0H1", "receiver": "L1H2", "ran": True,
                                  "reason": path.reason}
    assert d["path"] == "(in memory)" and d["step"] is None
