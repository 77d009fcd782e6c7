"""Tests of pgcheck.trajectory_check (registered as "trajectory_log_prob"): the reference is
cross-checked by enumerating a tiny MDP, correct styles pass, each mistake fails with its
diagnosis, bad input is an "error", and measure → JSON → judge gives the same report."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import math
import time

import numpy as np
import pytest
import torch

import pgcheck
from pgcheck.checks import trajectory_log_prob as tc
from pgcheck.checks.registry import REGISTRY
from pgcheck.report import Report
from pgcheck.sandbox import wall_limit

check = pgcheck.check_trajectory_log_prob


# ------------------------------------------------------------------ correct implementations
def vectorised(states, actions, log_p0, log_pi, log_P):
    return (
        log_p0[states[0]]
        + log_pi[states[:-1], actions].sum()
        + log_P[states[:-1], actions, states[1:]].sum()
    )


def loop(states, actions, log_p0, log_pi, log_P):
    total = log_p0[states[0]]
    for t in range(len(actions)):
        s, a, s_next = states[t], actions[t], states[t + 1]
        total = total + log_pi[s, a] + log_P[s, a, s_next]
    return total


def gather_style(states, actions, log_p0, log_pi, log_P):
    pol = log_pi[states[:-1]].gather(1, actions[:, None]).squeeze(1)
    trans = log_P[states[:-1], actions].gather(1, states[1:, None]).squeeze(1)
    return log_p0[states[0]] + torch.cat([pol, trans]).sum()


def numpy_style(states, actions, log_p0, log_pi, log_P):
    s, a = np.asarray(states), np.asarray(actions)
    p0, pi, P = np.asarray(log_p0), np.asarray(log_pi), np.asarray(log_P)
    return float(p0[s[0]] + pi[s[:-1], a].sum() + P[s[:-1], a, s[1:]].sum())


def python_float(states, actions, log_p0, log_pi, log_P):
    s, a = states.tolist(), actions.tolist()
    total = float(log_p0[s[0]])
    for t in range(len(a)):
        total += float(log_pi[s[t], a[t]]) + float(log_P[s[t], a[t], s[t + 1]])
    return total


def one_element_vector(states, actions, log_p0, log_pi, log_P):
    return vectorised(states, actions, log_p0, log_pi, log_P).reshape(1)


# ------------------------------------------------------------------ the reference
def test_reference_sums_to_one_over_all_trajectories_of_a_tiny_mdp():
    """Σ_τ exp(log p(τ)) = 1 by enumeration, and log p(τ) = log of the product of the factors
    computed from the probability tables (not the log tables)."""
    g = torch.Generator().manual_seed(0)
    n_s, n_a, horizon = 2, 3, 3
    p0 = torch.softmax(torch.randn(n_s, generator=g, dtype=torch.float64), -1)
    pi = torch.softmax(torch.randn(n_s, n_a, generator=g, dtype=torch.float64), -1)
    P = torch.softmax(torch.randn(n_s, n_a, n_s, generator=g, dtype=torch.float64), -1)
    total = 0.0
    count = 0
    for s in itertools.product(range(n_s), repeat=horizon + 1):
        for a in itertools.product(range(n_a), repeat=horizon):
            lp = tc.reference(torch.tensor(s), torch.tensor(a), p0.log(), pi.log(), P.log())
            product = float(p0[s[0]])
            for t in range(horizon):
                product *= float(pi[s[t], a[t]]) * float(P[s[t], a[t], s[t + 1]])
            assert math.isclose(lp, math.log(product), rel_tol=1e-12, abs_tol=1e-12)
            total += math.exp(lp)
            count += 1
    assert count == n_s ** (horizon + 1) * n_a**horizon
    assert abs(total - 1.0) < 1e-12


def test_reference_gradients_are_autograd_of_the_reference():
    for inst in tc.trajectory_instances():
        args = {
            k: (v.clone().requires_grad_(True) if k in tc.TABLES else v)
            for k, v in inst["args"].items()
        }
        grads = torch.autograd.grad(vectorised(**args), [args[k] for k in tc.TABLES])
        n_s, n_a = args["log_pi"].shape
        refs = tc.reference_grads(args["states"], args["actions"], int(n_s), int(n_a))
        for k, gr in zip(tc.TABLES, grads, strict=True):
            np.testing.assert_array_equal(gr.numpy(), refs[k])
        assert refs["log_pi"].sum() == len(inst["args"]["actions"])


def test_instances_are_fixed_normalised_and_cover_the_cases():
    a, b = tc.trajectory_instances(), tc.trajectory_instances()
    horizons = set()
    near_deterministic = False
    for x, y in zip(a, b, strict=True):
        for k in x["args"]:
            assert torch.equal(x["args"][k], y["args"][k])
        args = x["args"]
        assert args["states"].dtype == torch.long and args["actions"].dtype == torch.long
        assert len(args["states"]) == len(args["actions"]) + 1
        horizons.add(len(args["actions"]))
        assert torch.allclose(args["log_p0"].exp().sum(), torch.tensor(1.0, dtype=torch.float64))
        assert torch.allclose(args["log_pi"].exp().sum(-1), torch.ones(1, dtype=torch.float64))
        assert torch.allclose(args["log_P"].exp().sum(-1), torch.ones(1, dtype=torch.float64))
        for k in tc.TABLES:
            assert torch.isfinite(args[k]).all()  # every probability > 0
        near_deterministic |= bool(args["log_P"].exp().max() > 0.99)
        assert tc.reference(**args) == pytest.approx(float(vectorised(**args)), abs=1e-12)
    assert 1 in horizons and len(horizons) >= 4
    assert near_deterministic


def test_every_mistake_differs_from_the_answer_and_from_the_others():
    keys = list(tc.DIAGNOSES)
    insts = tc.trajectory_instances()
    table = {k: np.array([tc.candidates(i["args"])[k] for i in insts]) for k in keys}
    ref = np.array([tc.reference(**i["args"]) for i in insts])
    for k in keys:
        assert np.max(np.abs(table[k] - ref)) > 1e-3, k
    for k1, k2 in itertools.combinations(keys, 2):
        assert np.max(np.abs(table[k1] - table[k2])) > 1e-3, (k1, k2)


# ------------------------------------------------------------------ correct code passes
@pytest.mark.parametrize(
    "fn", [vectorised, loop, gather_style, numpy_style, python_float, one_element_vector]
)
def test_correct_implementations_pass(fn):
    report = check(fn)
    assert report.passed and report.verdict == "correct", report.message
    assert "log p(τ)" in report.message


@pytest.mark.parametrize("fn", [vectorised, loop, gather_style])
def test_differentiable_answers_have_their_gradient_checked(fn):
    report = check(fn, require_grad=True)
    assert report.passed, report.message
    assert "gradient" in report.message
    assert not any("not checked" in n for n in report.notes)


@pytest.mark.parametrize("fn", [numpy_style, python_float])
def test_float_answers_pass_with_a_note_about_gradients(fn):
    report = check(fn)
    assert report.passed
    assert any("Gradients were not checked" in n for n in report.notes), report.notes
    strict = check(fn, require_grad=True)
    assert not strict.passed and strict.diagnosis == "not_differentiable"


# ------------------------------------------------------------------ mistakes
def _terms(states, log_pi, log_P, actions):
    return log_pi[states[:-1], actions], log_P[states[:-1], actions, states[1:]]


def m_policy_only(states, actions, log_p0, log_pi, log_P):
    return log_pi[states[:-1], actions].sum()


def m_missing_p0(states, actions, log_p0, log_pi, log_P):
    pol, trans = _terms(states, log_pi, log_P, actions)
    return pol.sum() + trans.sum()


def m_missing_transitions(states, actions, log_p0, log_pi, log_P):
    return log_p0[states[0]] + log_pi[states[:-1], actions].sum()


def m_same_state(states, actions, log_p0, log_pi, log_P):
    s = states[:-1]
    return log_p0[states[0]] + log_pi[s, actions].sum() + log_P[s, actions, s].sum()


def m_reversed(states, actions, log_p0, log_pi, log_P):
    return (
        log_p0[states[0]]
        + log_pi[states[:-1], actions].sum()
        + log_P[states[1:], actions, states[:-1]].sum()
    )


def m_from_next(states, actions, log_p0, log_pi, log_P):
    return (
        log_p0[states[0]]
        + log_pi[states[:-1], actions].sum()
        + log_P[states[1:], actions, states[1:]].sum()
    )


def m_policy_next_state(states, actions, log_p0, log_pi, log_P):
    return (
        log_p0[states[0]]
        + log_pi[states[1:], actions].sum()
        + log_P[states[:-1], actions, states[1:]].sum()
    )


def m_probability(states, actions, log_p0, log_pi, log_P):
    p = log_p0.exp()[states[0]]
    for t in range(len(actions)):
        s, a = states[t], actions[t]
        p = p * log_pi.exp()[s, a] * log_P.exp()[s, a, states[t + 1]]
    return p


def m_all_actions(states, actions, log_p0, log_pi, log_P):
    return (
        log_p0[states[0]]
        + log_pi[states[:-1]].sum()
        + log_P[states[:-1], actions, states[1:]].sum()
    )


def m_all_next_states(states, actions, log_p0, log_pi, log_P):
    return (
        log_p0[states[0]] + log_pi[states[:-1], actions].sum() + log_P[states[:-1], actions].sum()
    )


def m_sign(states, actions, log_p0, log_pi, log_P):
    return -vectorised(states, actions, log_p0, log_pi, log_P)


def m_last_step_dropped(states, actions, log_p0, log_pi, log_P):
    total = log_p0[states[0]]
    for t in range(len(actions) - 1):
        total = total + log_pi[states[t], actions[t]] + log_P[states[t], actions[t], states[t + 1]]
    return total


def m_mean(states, actions, log_p0, log_pi, log_P):
    pol, trans = _terms(states, log_pi, log_P, actions)
    return log_p0[states[0]] + pol.mean() + trans.mean()


MISTAKES = [
    (m_policy_only, "policy_only", "Σ_t log π(a_t|s_t)"),
    (m_missing_p0, "missing_p0", "log p(s_0)"),
    (m_missing_transitions, "missing_transitions", "log P(s_{t+1}|s_t,a_t)"),
    (m_same_state, "transition_same_state", "log P(s_t|s_t,a_t)"),
    (m_reversed, "transition_reversed", "log P(s_t|s_{t+1},a_t)"),
    (m_from_next, "transition_from_next", "s_{t+1}"),
    (m_policy_next_state, "policy_next_state", "log π(a_t|s_{t+1})"),
    (m_probability, "probability", "p(τ)"),
    (m_all_actions, "policy_all_actions", "every action"),
    (m_all_next_states, "transition_all_states", "every next state"),
    (m_sign, "sign", "−log p(τ)"),
    (m_last_step_dropped, "last_step_dropped", "Off by one"),
    (m_mean, "mean_over_steps", "average"),
]


@pytest.mark.parametrize("fn,diagnosis,phrase", MISTAKES, ids=[m[1] for m in MISTAKES])
def test_each_mistake_fails_with_its_diagnosis(fn, diagnosis, phrase):
    report = check(fn)
    assert not report.passed and report.verdict == "wrong", report.message
    assert report.diagnosis == diagnosis, (report.diagnosis, report.message)
    assert phrase in report.message
    assert "you return" in report.message


def test_policy_only_message_mentions_the_score():
    message = check(m_policy_only).message
    assert "gradient" in message and "log p(s_0)" in message


def test_unrecognised_mistake_gets_a_gradient_hint():
    def weird(states, actions, log_p0, log_pi, log_P):
        return vectorised(states, actions, log_p0, log_pi, log_P) + 0.5 * log_pi[0, 0]

    report = check(weird)
    assert not report.passed and report.diagnosis == "mismatch"
    assert "log π(a=0|s=0)" in report.message


def test_detached_part_fails_the_gradient_check():
    def detached(states, actions, log_p0, log_pi, log_P):
        return (
            log_p0[states[0]]
            + log_pi[states[:-1], actions].sum()
            + log_P[states[:-1], actions, states[1:]].sum().detach()
        )

    report = check(detached)
    assert not report.passed and report.diagnosis == "gradient", report.message
    assert "log_P" in report.message


# ------------------------------------------------------------------ bad input
def raises(states, actions, log_p0, log_pi, log_P):
    raise ValueError("boom")


def not_written(states, actions, log_p0, log_pi, log_P):
    raise NotImplementedError()


def returns_none(states, actions, log_p0, log_pi, log_P):
    (log_p0[states[0]])


def per_step_vector(states, actions, log_p0, log_pi, log_P):
    return log_pi[states[:-1], actions] + log_P[states[:-1], actions, states[1:]]


def nan_output(states, actions, log_p0, log_pi, log_P):
    return torch.tensor(float("nan"), dtype=torch.float64)


def runs_forever(states, actions, log_p0, log_pi, log_P):
    while True:
        pass


def prints_a_lot(states, actions, log_p0, log_pi, log_P):
    for _ in range(100_000):
        print("step")
    return vectorised(states, actions, log_p0, log_pi, log_P)


def in_place(states, actions, log_p0, log_pi, log_P):
    log_pi += 0.0
    log_pi[0, 0] = 1.0
    return vectorised(states, actions, log_p0, log_pi, log_P)


def wrong_arity(states, actions):
    return 0.0


def returns_string(states, actions, log_p0, log_pi, log_P):
    return "log p"


@pytest.mark.parametrize(
    "fn,words",
    [
        (raises, "ValueError"),
        (not_written, "not written yet"),
        (returns_none, "None"),
        (per_step_vector, "one number"),
        (nan_output, "NaN"),
        (prints_a_lot, "printed"),
        (in_place, "in place"),
        (wrong_arity, "TypeError"),
        (returns_string, "str"),
        (42, "int"),
    ],
)
def test_bad_input_is_an_error_report_and_writes_no_stderr(fn, words):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        report = check(fn)
    assert report.verdict == "error" and not report.passed, report
    assert words in report.message, report.message
    assert err.getvalue() == ""


def test_runs_forever_is_stopped_by_the_time_budget():
    start = time.monotonic()
    report = check(runs_forever, timeout=0.5)
    assert time.monotonic() - start < wall_limit(0.5) + 3
    assert report.verdict == "error" and report.diagnosis == "timeout"
    assert "time limit" in report.message


def test_unknown_option_is_a_usage_error():
    report = check(vectorised, kind="x")
    assert report.verdict == "error" and report.diagnosis == "usage"


def test_global_state_is_restored():
    def seeds(states, actions, log_p0, log_pi, log_P):
        torch.manual_seed(1)
        return vectorised(states, actions, log_p0, log_pi, log_P)

    before = torch.random.get_rng_state()
    report = check(seeds)
    assert report.verdict == "error"
    assert torch.equal(before, torch.random.get_rng_state())


# ------------------------------------------------------------------ measure / judge split
@pytest.mark.parametrize(
    "fn", [vectorised, numpy_style, m_policy_only, m_probability, raises, per_step_vector]
)
def test_measure_json_judge_round_trip(fn):
    entry = REGISTRY["trajectory_log_prob"]
    measurement = entry.measure(fn)
    again = json.loads(json.dumps(measurement, allow_nan=False))
    assert again == measurement
    direct = check(fn)
    via_json = entry.judge(again)
    assert via_json.to_dict() == direct.to_dict()
    assert Report.from_dict(json.loads(json.dumps(direct.to_dict()))).to_dict() == direct.to_dict()


def test_judge_rejects_a_measurement_of_another_shape():
    report = REGISTRY["trajectory_log_prob"].judge(
        {"check": "trajectory_log_prob", "values": [0.0], "grads": [None]}
    )
    assert report.verdict == "error" and report.diagnosis == "usage"


def test_hidden_test_passes_and_fails(capfd):
    namespace = {"log_prob_trajectory": vectorised}
    exec(
        "import pgcheck.grading\n"  # noqa: S102 - a fixed snippet, as in a hidden test cell
        'result = pgcheck.grading.hidden_test("trajectory_log_prob", "log_prob_trajectory")',
        namespace,
    )
    assert namespace["result"] is None  # nbgrader must not read the value as partial credit
    namespace["log_prob_trajectory"] = m_policy_only
    with pytest.raises(AssertionError) as failed:
        exec(
            'pgcheck.grading.hidden_test("trajectory_log_prob", "log_prob_trajectory")',  # noqa: S102
            namespace,
        )
    # the contract: "hidden test failed" and nothing else, no chained exception, no output
    assert str(failed.value) == "hidden test failed"
    assert failed.value.__cause__ is None and failed.value.__suppress_context__
    assert capfd.readouterr() == ("", "")
