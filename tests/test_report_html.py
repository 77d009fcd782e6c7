"""The report's HTML table: 4 significant digits, numbers never split, round-off shown as 0,
a legend line for every column, maths in messages typeset."""

from __future__ import annotations

import re

import torch

import pgcheck
from pgcheck.report import COLUMN_LEGEND, Report, Row, math_html


def _numbers(html: str) -> list[str]:
    return re.findall(r'<span style="white-space:nowrap">(.*?)</span>', html)


def test_numbers_have_four_significant_digits_and_no_e_notation() -> None:
    report = Report(
        passed=True,
        verdict="correct",
        message="ok",
        rows=[Row("i", {"yours": [0.123456789, -1.23456e-5, 123456.7], "max |diff|": 3.2e-16})],
    )
    shown = _numbers(report._repr_html_())
    assert shown == [
        "0.1235",
        "−1.235×10<sup>−5</sup>",
        "1.235×10<sup>5</sup>",
        "3.2×10<sup>−16</sup>",
    ]


def test_round_off_is_shown_as_zero_outside_error_columns() -> None:
    def probabilities_summed(probs, q_values, mask):  # gradient exactly zero
        return -(probs.sum(-1) * q_values * mask).sum(1).mean()

    report = pgcheck.check_pseudo_loss(probabilities_summed)
    assert report.diagnosis == "zero_gradient"
    html = report._repr_html_()
    assert 'scale α = <span style="white-space:nowrap">0</span>' in html
    alphas = [row.columns["α"] for row in report.rows]
    assert any(a != 0 for a in alphas)  # round-off in the data ...
    row_html = html.split("<tbody>")[1]
    # ... and α's column shows 0 on every instance
    columns = re.findall(r"<tr>(.*?)</tr>", row_html)
    header = re.findall(r"<th[^>]*>(.*?)</th>", html)
    where = header.index("α")
    for tr in columns:
        cells = re.findall(r"<td[^>]*>(.*?)</td>", tr)
        assert cells[where] == '<span style="white-space:nowrap">0</span>', cells[where]


def test_every_column_of_the_built_in_checks_has_a_legend_line() -> None:
    torch.set_num_threads(1)

    def correct(log_probs, q_values, gamma, mask):
        discount = gamma ** torch.arange(mask.shape[1], dtype=torch.float64)
        return -(discount * q_values * log_probs * mask).sum(dim=1).mean()

    def reward_to_go(rewards, gamma):
        out, running = torch.zeros_like(rewards), 0.0
        for t in reversed(range(len(rewards))):
            running = rewards[t] + gamma * running
            out[t] = running
        return out

    reports = [pgcheck.check_pseudo_loss(correct), pgcheck.check_returns(reward_to_go)]
    for report in reports:
        keys = {k for row in report.rows for k in row.columns}
        assert keys, report
        assert keys <= set(COLUMN_LEGEND), keys - set(COLUMN_LEGEND)
        html = report._repr_html_()
        assert html.count("<li>") == len(keys)


def test_maths_in_messages_is_typeset_and_code_is_left_alone() -> None:
    html = math_html("weight log π(a_t|s_t) by γ^t G_t, not G_{t+1}; `log_probs` or gamma_t")
    assert "π(a<sub>t</sub>|s<sub>t</sub>)" in html and "γ<sup>t</sup>" in html
    assert "G<sub>t+1</sub>" in html
    assert "<code>log_probs</code>" in html and "gamma_t" in html
    assert math_html("<script>") == "&lt;script&gt;"
