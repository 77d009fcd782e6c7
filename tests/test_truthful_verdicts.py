"""Names and verdicts that say the truth (issue 10), through the public API.

Every loss here is written the way a learner would write it (never built from
``pgcheck.diagnosis.estimators``). Each test asserts one thing the report must say.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import pgcheck
from pgcheck.checks.base import finite_or_none
from pgcheck.report import Report, Row

ROOT = Path(__file__).resolve().parents[1]


def discount(gamma, T):
    return torch.tensor([gamma**t for t in range(T)], dtype=torch.float64)


def rtg_loss(log_probs, q_values, gamma, mask):
    """A correct loss: −(1/B) Σ_i Σ_t γ^t G_t log π(a_t|s_t)."""
    return -(discount(gamma, mask.shape[1]) * q_values * log_probs * mask).sum(1).mean()


# --------------------------------------------------------------------- accepted by option
def no_gamma_t(log_probs, q_values, mask):
    return -(q_values * log_probs * mask).sum(1).mean()


def test_a_convention_accepted_by_option_has_its_own_verdict():
    report = pgcheck.check_pseudo_loss(no_gamma_t, accept_missing_gamma_t=True)
    assert report.passed and report.verdict == "accepted", report
    assert report.verdict != "unbiased" and report.diagnosis == "missing_gamma_t"
    assert "not unbiased" in report.message and "biased" in report.message
    # γ = 1 everywhere: the convention is the gradient itself, so that one is unbiased
    undiscounted = pgcheck.check_pseudo_loss(no_gamma_t, problem="mdp-tabular-undiscounted")
    assert undiscounted.verdict == "unbiased", undiscounted


# --------------------------------------------------------------------- values is privileged
def pg_plus_start_value(log_probs, q_values, values, gamma, mask):
    """A correct policy gradient plus −V(s_0): ∇V^π(s_0) = ∇J, so E[ĝ] = 2 ∇J."""
    return rtg_loss(log_probs, q_values, gamma, mask) - values[:, 0].mean()


def start_value_only(log_probs, values, mask):
    """−V(s_0) alone: E[ĝ] = ∇J exactly, but only because `values` is the exact V^π_θ."""
    return -values[:, 0].mean() + 0.0 * (log_probs * mask).sum()


def test_differentiating_values_is_described_truthfully():
    report = pgcheck.check_pseudo_loss(pg_plus_start_value)
    assert not report.passed and report.diagnosis == "theta_leak", report
    assert report.scale == pytest.approx(2.0, rel=1e-9)
    assert "privileged" in report.message
    assert "in total E[−∇L] = 2·∇J" in report.message, report.message
    assert "through `values` is ∇J" in report.message, report.message


def test_a_loss_that_is_exact_only_through_values_fails():
    report = pgcheck.check_pseudo_loss(start_value_only)
    assert report.scale == pytest.approx(1.0, rel=1e-9)  # ∇J, by privilege
    assert not report.passed and report.diagnosis == "theta_leak", report
    assert "privileged" in report.message and "log-probabilities is 0" in report.message


# --------------------------------------------------------------------- α, legend, where
def mean_over_padded_steps(log_probs, q_values, gamma, mask):
    return -(discount(gamma, mask.shape[1]) * q_values * log_probs * mask).mean()


def test_an_alpha_that_differs_between_instances_is_said():
    report = pgcheck.check_pseudo_loss(mean_over_padded_steps)
    alphas = [row.columns["α"] for row in report.rows]
    assert max(alphas) - min(alphas) > 0.1  # 1/T differs between the problems
    assert any("α differs between instances" in n for n in report.notes), report.notes


def test_alpha_and_residual_are_explained_in_one_line_each():
    report = pgcheck.check_pseudo_loss(no_gamma_t)
    columns = set(report.rows[0].columns)
    assert set(report.legend) == {"α", "‖r‖/‖E[−∇L]‖"} and set(report.legend) <= columns
    for key, line in report.legend.items():
        assert "\n" not in line and len(line) < 200
        assert f"  {key}: {line}" in str(report)
        assert line.split(":")[0][:20] in report._repr_html_()
    assert Report.from_dict(report.to_dict()).legend == report.legend


def reweights_step_one(log_probs, q_values, gamma, mask):
    """An unusual mistake: the weight of step t = 1 is multiplied by 1.5."""
    T = mask.shape[1]
    boost = torch.ones(T, dtype=torch.float64)
    if T > 1:
        boost[1] = 1.5
    return -(discount(gamma, T) * q_values * boost * log_probs * mask).sum(1).mean()


def test_an_unrecognised_mistake_shows_where_the_weights_differ():
    report = pgcheck.check_pseudo_loss(reweights_step_one)
    assert not report.passed and report.diagnosis is None, report
    assert "differ from γ^t G_t most at" in report.message, report.message
    assert "(t = 1;" in report.message and "trajectory" in report.message
    assert "t = 0:" not in report.message and "t = 2:" not in report.message


# --------------------------------------------------------------------- normalisation paths
def normalise_over_real_steps(log_probs, q_values, gamma, mask):
    w = discount(gamma, mask.shape[1]) * q_values
    real = w[mask > 0]
    w = (w - real.mean()) / (real.std(unbiased=False) + 1e-8)
    return -(w * log_probs * mask).sum(1).mean()


@pytest.mark.parametrize(
    "options",
    [{}, {"problem": "mdp-linear"}, {"problem": "bandit"}, {"one_at_a_time": True}],
    ids=["default", "mdp-linear", "bandit", "one_at_a_time"],
)
def test_advantage_normalisation_is_named_on_every_path(options):
    report = pgcheck.check_pseudo_loss(normalise_over_real_steps, **options)
    assert (report.passed, report.diagnosis) == (False, "advantage_normalisation"), report


def test_a_batch_normalisation_on_batches_of_one_says_why_it_is_nan():
    def normalised_returns(log_probs, returns, mask):
        adv = (returns - returns.mean()) / (returns.std() + 1e-8)  # std of one value: NaN
        return -(adv[:, None] * log_probs * mask).sum(1).mean()

    report = pgcheck.check_pseudo_loss(normalised_returns, one_at_a_time=True)
    assert report.verdict == "error" and report.diagnosis == "nan", report
    assert any("advantage normalisation" in n for n in report.notes), report.notes


# --------------------------------------------------------------------- fd writes, recursion
def writes_to_fds(log_probs, q_values, gamma, mask):
    import os

    os.write(2, b"debug: on fd 2\n")
    return rtg_loss(log_probs, q_values, gamma, mask)


def test_writes_to_fd_1_and_2_become_a_note(capfd):
    report = pgcheck.check_pseudo_loss(writes_to_fds)
    assert report.passed, report
    assert any("fd 1/2" in n and "debug: on fd 2" in n for n in report.notes), report.notes
    assert capfd.readouterr() == ("", "")


def recursion_as_a_loop(log_probs):
    sys.setrecursionlimit(10**6)

    def depth(n):
        return depth(n + 1) + 1

    return depth(0) * log_probs.sum()


def test_a_recursion_without_end_gets_a_clear_message_quickly(capfd):
    start = time.monotonic()
    report = pgcheck.check_pseudo_loss(recursion_as_a_loop, timeout=2.0)
    assert time.monotonic() - start < 5.0
    assert report.verdict == "error" and report.diagnosis == "recursion", report
    assert "recursed without end" in report.message and "as a loop" in report.message
    assert "batched call" not in report.message  # not a shape problem
    assert capfd.readouterr() == ("", "")


# --------------------------------------------------------------------- −inf
def test_minus_infinity_stays_minus_infinity():
    wire = finite_or_none(np.array([0.0, -np.inf, np.nan]))
    assert wire == [0.0, "-inf", "nan"]
    json.dumps(wire, allow_nan=False)  # measurements stay strict JSON
    back = np.array(wire, dtype=np.float64)
    assert back[:2].tolist() == [0.0, -math.inf] and math.isnan(back[2])


def naive_log_softmax(logits, actions):
    """log(exp(z) / Σ exp(z)): −inf once a probability underflows."""
    p = torch.exp(logits) / torch.exp(logits).sum(-1, keepdim=True)
    return torch.log(p.gather(-1, actions[:, None]).squeeze(-1))


def test_a_log_prob_of_minus_infinity_is_shown_as_minus_infinity():
    report = pgcheck.check_log_prob(naive_log_softmax, policy="softmax")
    assert not report.passed, report
    shown = [v for row in report.rows for v in (row.columns.get("yours") or [])]
    assert "-inf" in shown and None not in shown, shown
    assert "-inf" in str(report)
    report = Report(False, "wrong", "m", rows=[Row("x", {"yours": [-math.inf, 0.5]})])
    assert "[-inf, 0.5]" in str(report)
    assert json.loads(json.dumps(report.to_dict()))["rows"][0]["columns"]["yours"][0] == -math.inf


# --------------------------------------------------------------------- CPU budget
LOSSES = {
    "correct": "rtg_loss",
    "unrecognised": "reweights_step_one",
    "leak": "pg_plus_start_value",
}


@pytest.mark.parametrize("kind", list(LOSSES))
def test_a_first_check_stays_within_its_cpu_budget(kind):
    """In a fresh process on one thread: < 1 CPU-s for a correct loss, < 2 for a mistake
    (the diagnosis of an unrecognised mistake walks the whole bank). CPU time (the process
    and its forked measurement) is robust to machine load; the import is not counted."""
    code = (
        "import resource, sys, torch\n"
        "torch.set_num_threads(1)\n"
        f"sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
        "import pgcheck, test_truthful_verdicts as T\n"
        "def cpu():\n"
        "    a = resource.getrusage(resource.RUSAGE_SELF)\n"
        "    b = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime\n"
        "c = cpu()\n"
        f"r = pgcheck.check_pseudo_loss(T.{LOSSES[kind]})\n"
        "print(cpu() - c, r.verdict)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    seconds, verdict = out.stdout.split()
    assert verdict == ("unbiased" if kind == "correct" else "biased")
    assert float(seconds) < (1.0 if kind == "correct" else 2.0), out.stdout


def convention_averaged_over_padded_steps(log_probs, q_values, mask):
    """No γ^t (the convention) and a .mean() over all B×T entries (not the convention)."""
    return -(q_values * log_probs * mask).mean()


def test_the_convention_option_does_not_hide_a_mean_over_padded_steps():
    report = pgcheck.check_pseudo_loss(
        convention_averaged_over_padded_steps, accept_missing_gamma_t=True
    )
    assert not report.passed and report.verdict == "biased", report
    assert report.diagnosis == "missing_gamma_t+mean_over_steps", report


def logit_as_baseline(logits, actions, q_values, gamma, mask):
    """Subtracts the (detached) logit of the taken action: an action-dependent 'baseline'
    whose expected effect is exactly an entropy bonus with β = 1 (∇H = −Σ_a z_a ∇π_a)."""
    b = logits.detach().gather(-1, actions[..., None]).squeeze(-1)
    lp = torch.log_softmax(logits, -1).gather(-1, actions[..., None]).squeeze(-1)
    return -(discount(gamma, mask.shape[1]) * (q_values - b) * lp * mask).sum(1).mean()


def test_a_logit_baseline_is_named_for_what_it_does_and_what_it_equals():
    report = pgcheck.check_pseudo_loss(logit_as_baseline)
    assert report.diagnosis == "action_dependent_baseline", report
    assert "acts as an entropy bonus" in report.message and "β ≈ 1" in report.message
