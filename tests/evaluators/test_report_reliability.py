"""The report's certified-reliability table: status, coverage, error with its bound, p_wrong AUROC with its CI,
with and without the base cross-check, and why a domain is uncertified or the base check was off."""

import html

from evaluators.card import write_card
from evaluators.report import render_report
from tests.evaluators.test_reliability_card import answers, section_of
from tests.evaluators.test_report import card, distinct_colours


def test_the_report_shows_each_variants_certificates_side_by_side(tmp_path):
    with_base, _ = section_of(answers(600, base=True))
    thin, _ = section_of(answers(10), weights_sha256=None)
    variant = {**card("reap-50", "reap", 0.5), "reliability": with_base}
    base = {**card("base"), "reliability": thin}
    older = card("reap-25", "reap", 0.25)  # a card from before certificates: said so, not an error
    paths = [write_card(tmp_path / c["variant"], c) for c in (variant, base, older)]
    page = render_report(paths, tmp_path / "report").read_text()
    section = page.split('id="certificates"')[1].split("<h2>")[0]
    certificate = with_base["domains"]["in_domain"]["certificate"]
    auroc = with_base["domains"]["in_domain"]["quality"]["p_wrong"]["auroc"]
    assert "reap-50 (reap, 0.5)" in section and "certified" in section and "0.05 / 0.05" in section
    assert f"{certificate['coverage']:.3f}" in section and f"&le; {certificate['error_upper']:.3f}" in section
    assert f"{auroc['value']:.3f} [{auroc['ci95'][0]:.3f}, {auroc['ci95'][1]:.3f}]" in section
    for name in ("in_domain", "cross_domain"):  # the no-base-check columns
        without = with_base["without_base_check"][name]["certificate"]
        shown = f"{without['coverage']:.3f}" if without["status"] == "certified" else html.escape(without["reason"])
        assert shown in section
    assert "uncertified" in section and "needs at least" in section  # the thin base card's reason
    assert "base cross-check off: no answer carries base_mean_logprob" in section
    assert "reap-25 (reap, 0.25): no reliability section" in section
    assert "Risk-coverage of p_wrong" in page and distinct_colours(tmp_path / "report" / "risk_coverage.png") > 20
