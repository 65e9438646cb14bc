"""The report's per-task tables: per family, base vs variant with recovery, macro and micro averages,
and the decoding settings (and skipped rows) printed under each table."""

import re

import pytest

from evaluators.card import write_card
from evaluators.report import render_report
from evaluators.report_data import variants
from evaluators.report_tasks import task_tables

DECODING = {"temperature": 0.0, "top_p": 1.0, "max_tokens": 128, "retries_on_empty": 0}


def task(accuracy, n, **extra):
    return {
        "domain": "biomedical",
        "kind": "multiple_choice",
        "n": n,
        "version": 1,
        "metrics": {"exact_match": {"value": accuracy, "ci95": None}},
        "decoding": DECODING,
        **extra,
    }


def card(name, method, pubmedqa, medqa):
    return {
        "schema_version": 1,
        "variant": name,
        "model": name,
        "pruning": {"method": method, "ratio": 0.5} if method else None,
        "tasks": {
            "multimedqa_pubmedqa": task(
                pubmedqa,
                100,
                n_skipped=2,
                skipped={"PMID of the list is not in the data file": {"count": 2, "lines": []}},
            ),
            "multimedqa_medqa": task(medqa, 300),
            "medinst32_biosses": {
                "domain": "biomedical",
                "kind": "generation",
                "n": 10,
                "metrics": {"mse": {"value": 2.0 if method else 1.0}},
                "decoding": {**DECODING, "max_tokens": 1024},
            },
        },
    }


def cells(page: str, row_start: str) -> list[str]:
    row = re.search(rf"<tr><td>{re.escape(row_start)}</td>(.*?)</tr>", page).group(1)
    return re.findall(r"<td>(.*?)</td>", row)


def test_family_tables_with_recovery_macro_and_micro_averages():
    page = task_tables(variants([card("base", None, 0.8, 0.6), card("reap-50", "reap", 0.6, 0.6)]))
    assert "<h4>MultiMedQA</h4>" in page and "<h4>MedINST32</h4>" in page
    # pubmedqa: base 0.8, variant 0.6 -> recovery 0.75, shaded (under 0.9 on a higher-is-better metric)
    assert cells(page, "multimedqa_pubmedqa")[-1] == '<span class="low">0.600 (0.75)</span>'
    # macro: base (0.8 + 0.6) / 2 = 0.7, variant (0.6 + 0.6) / 2 = 0.6 -> 0.857
    macro = cells(page, "<strong>macro average</strong>")
    assert macro[2:] == ["0.700", '<span class="low">0.600 (0.86)</span>']
    # micro: base (0.8*100 + 0.6*300) / 400 = 0.65, variant 0.6 -> 0.923 (not shaded)
    micro = cells(page, "<strong>micro average</strong>")
    assert micro[2:] == ["0.650", "0.600 (0.92)"]
    # mse is lower-is-better: its recovery 2.0 is shown, never shaded as a loss of utility
    assert cells(page, "medinst32_biosses")[-1] == "2.000 (2.00)"


def test_decoding_settings_and_skipped_rows_under_each_table():
    page = task_tables(variants([card("base", None, 0.8, 0.6), card("reap-50", "reap", 0.6, 0.6)]))
    multimedqa, medinst = page.split("<h4>MedINST32</h4>")
    assert "Decoding: temperature 0.0, top p 1.0, max tokens 128, retries on empty 0." in multimedqa
    assert "multimedqa_pubmedqa: 2 (PMID of the list is not in the data file x2)" in multimedqa
    assert "max tokens 1024" in medinst


def test_without_a_base_the_tables_show_values_only():
    page = task_tables(variants([card("reap-50", "reap", 0.6, 0.6)]))
    assert cells(page, "multimedqa_pubmedqa") == ["exact_match", "100", "0.600"]


def test_the_report_page_includes_the_tables(tmp_path):
    paths = [
        write_card(tmp_path / name, card(name, method, a, b))
        for name, method, a, b in (("base", None, 0.8, 0.6), ("reap-50", "reap", 0.6, 0.6))
    ]
    page = render_report(paths, tmp_path / "report").read_text()
    assert "Per task, by family" in page and "Decoding: temperature 0.0" in page
    assert page.index("Per task, by family") < page.index("Every metric with its 95% interval")


@pytest.mark.parametrize("name, family", [("medhalt_ir_abs2pub", "Med-HALT"), ("bio_qa", "biomedical tasks")])
def test_tasks_group_into_families_by_name(name, family):
    from evaluators.report_tasks import family as family_of

    assert family_of(name, {"domain": "biomedical"}) == family
