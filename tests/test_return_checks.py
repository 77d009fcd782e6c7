"""Tests of pgcheck.return_checks.check_returns (kinds "return", "reward_to_go",
"discounted_reward_to_go"): correct styles pass, each mistake fails with the right diagnosis,
the reference is cross-checked, bad input is an "error", measure/judge round-trips via JSON."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pgcheck.checks import returns as rc
from pgcheck.checks.registry import REGISTRY
from pgcheck.report import Report

check_returns = rc.check_returns


# ------------------------------------------------------------------ correct implementations
def rtg_torch_loop(rewards, gamma):
    out = torch.zeros_like(rewards)
    acc = 0.0
    for t in reversed(range(len(rewards))):
        acc = rewards[t] + gamma * acc
        out[t] = acc
    return out


def rtg_numpy(rewards, gamma):
    r = np.asarray(rewards)
    out, acc = [], 0.0
    for x in r[::-1]:
        acc = x + gamma * acc
        out.append(acc)
    return np.array(out[::-1])


def rtg_list(rewards, gamma):
    r = rewards.tolist()
    return [sum(gamma ** (k - t) * r[k] for k in range(t, len(r))) for t in range(len(r))]


def rtg_matrix(rewards, gamma):
    n = len(rewards)
    t = torch.arange(n, dtype=torch.float64)
    expo = (t[None, :] - t[:, None]).clamp(min=0)
    weights = torch.triu(torch.pow(torch.tensor(gamma, dtype=torch.float64), expo))
    return weights @ rewards


def rtg_float32(rewards, gamma):
    return rtg_numpy(rewards, gamma).astype(np.float32)


def ret_loop(rewards, gamma):
    return sum(gamma**t * float(r) for t, r in enumerate(rewards))


def ret_tensor(rewards, gamma):
    return (gamma ** torch.arange(len(rewards), dtype=torch.float64) * rewards).sum()


def ret_numpy_scalar(rewards, gamma):
    r = np.asarray(rewards)
    return np.float64(np.polyval(r[::-1], gamma))  # Horner: r_0 + γ(r_1 + γ(…))


def drtg_torch(rewards, gamma):
    return gamma ** torch.arange(len(rewards), dtype=torch.float64) * rtg_torch_loop(rewards, gamma)


def drtg_numpy(rewards, gamma):
    r = np.asarray(rewards)
    disc = gamma ** np.arange(len(r)) * r
    return np.cumsum(disc[::-1])[::-1].copy()


@pytest.mark.parametrize(
    ("kind", "fn"),
    [
        ("reward_to_go", rtg_torch_loop),
        ("reward_to_go", rtg_numpy),
        ("reward_to_go", rtg_list),
        ("reward_to_go", rtg_matrix),
        ("reward_to_go", rtg_float32),
        ("return", ret_loop),
        ("return", ret_tensor),
        ("return", ret_numpy_scalar),
        ("return", lambda r, g: [ret_loop(r, g)]),
        ("discounted_reward_to_go", drtg_torch),
        ("discounted_reward_to_go", drtg_numpy),
    ],
)
def test_correct(kind, fn):
    report = check_returns(fn, kind=kind)
    assert report.passed, report.message
    assert report.verdict == "correct"
    assert len(report.rows) == len(rc.return_cases())


# ------------------------------------------------------------------ mistakes
def _g(rewards, gamma):
    return rtg_numpy(rewards, gamma)


def m_g0(rewards, gamma):
    return np.full(len(rewards), _g(rewards, gamma)[0])


def m_come(rewards, gamma):
    out, acc = [], 0.0
    for r in rewards.tolist():
        acc = acc * gamma + r
        out.append(acc)
    return out


def m_come_from_start(rewards, gamma):
    return np.cumsum(gamma ** np.arange(len(rewards)) * rewards.numpy())


def m_from_end(rewards, gamma):
    r = rewards.tolist()
    n = len(r)
    return [sum(gamma ** (n - 1 - k) * r[k] for k in range(t, n)) for t in range(n)]


def m_drops_current(rewards, gamma):
    return _g(rewards, gamma) - rewards.numpy()


def m_shifted(rewards, gamma):
    return np.append(_g(rewards, gamma)[1:], 0.0)


def m_undiscounted(rewards, gamma):
    return _g(rewards, 1.0)


def m_immediate(rewards, gamma):
    return rewards.clone()


def m_not_summed(rewards, gamma):
    return gamma ** torch.arange(len(rewards), dtype=torch.float64) * rewards


def m_reversed(rewards, gamma):
    return _g(rewards, gamma)[::-1].copy()


def m_extra_gamma_t(rewards, gamma):
    return drtg_numpy(rewards, gamma)


def m_gamma_twice(rewards, gamma):
    return gamma ** (2 * np.arange(len(rewards))) * _g(rewards, gamma)


@pytest.mark.parametrize(
    ("fn", "diagnosis"),
    [
        (m_g0, "g0_everywhere"),
        (m_come, "reward_to_come"),
        (m_come_from_start, "reward_to_come_from_start"),
        (m_from_end, "discount_from_end"),
        (m_drops_current, "drops_current_reward"),
        (m_shifted, "drops_current_reward_shifted"),
        (m_undiscounted, "undiscounted"),
        (m_immediate, "immediate_reward"),
        (m_not_summed, "discounted_rewards_not_summed"),
        (m_reversed, "reversed_order"),
        (m_extra_gamma_t, "extra_gamma_t"),
    ],
)
def test_reward_to_go_mistakes(fn, diagnosis):
    report = check_returns(fn, kind="reward_to_go")
    assert not report.passed and report.verdict == "wrong"
    assert report.diagnosis == diagnosis, report.message
    assert "but G =" in report.message


@pytest.mark.parametrize(
    ("fn", "diagnosis"),
    [
        (rtg_numpy, "missing_gamma_t"),
        (lambda r, g: np.full(len(r), _g(r, g)[0]), "g0_everywhere"),
        (lambda r, g: g ** np.arange(len(r)) * _g(r, g)[0], "g0_times_gamma_t"),
        (lambda r, g: g ** np.arange(len(r)) * m_drops_current(r, g), "drops_current_reward"),
        (lambda r, g: g ** np.arange(len(r)) * _g(r, 1.0), "undiscounted"),
        (lambda r, g: g ** np.arange(len(r)) * np.asarray(m_from_end(r, g)), "discount_from_end"),
        (m_gamma_twice, "gamma_t_twice"),
        (m_come_from_start, "reward_to_come_from_start"),
    ],
)
def test_discounted_reward_to_go_mistakes(fn, diagnosis):
    report = check_returns(fn, kind="discounted_reward_to_go")
    assert not report.passed
    assert report.diagnosis == diagnosis, report.message


@pytest.mark.parametrize(
    ("fn", "diagnosis"),
    [
        (lambda r, g: float(r.sum()), "undiscounted"),
        (
            lambda r, g: sum(g ** (len(r) - 1 - t) * float(x) for t, x in enumerate(r)),
            "discount_from_end",
        ),
        (lambda r, g: sum(g ** (t + 1) * float(x) for t, x in enumerate(r)), "exponent_off_by_one"),
        (rtg_torch_loop, "vector_instead_of_scalar"),
    ],
)
def test_return_mistakes(fn, diagnosis):
    report = check_returns(fn, kind="return")
    assert not report.passed
    assert report.diagnosis == diagnosis, report.message


def test_vector_for_return_names_reward_to_go():
    report = check_returns(rtg_torch_loop, kind="return")
    assert "that is the reward-to-go" in report.message


def test_message_shows_numbers_and_fix():
    report = check_returns(m_come, kind="reward_to_go")
    assert "For rewards [" in report.message and "you return [" in report.message
    assert "G_t = r_t + γ G_{t+1}" in report.message


def test_unknown_mistake_gets_generic_advice():
    report = check_returns(lambda r, g: _g(r, g) + 0.1, kind="reward_to_go")
    assert report.diagnosis == "mismatch"
    assert "backward loop" in report.message


# ------------------------------------------------------------------ the reference
@given(st.lists(st.floats(-10, 10), min_size=1, max_size=15), st.floats(0.0, 1.0))
def test_reference_recursion_and_double_sum(rewards, gamma):
    r = np.array(rewards)
    g = rc.reference(r, gamma, "reward_to_go")
    brute = np.array(
        [sum(gamma ** (k - t) * r[k] for k in range(t, len(r))) for t in range(len(r))]
    )
    np.testing.assert_allclose(g, brute, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(g[:-1], r[:-1] + gamma * g[1:], rtol=1e-12, atol=1e-9)
    assert rc.reference(r, gamma, "return") == pytest.approx(
        sum(gamma**t * x for t, x in enumerate(rewards)), rel=1e-12, abs=1e-9
    )
    np.testing.assert_allclose(
        rc.reference(r, gamma, "discounted_reward_to_go"),
        gamma ** np.arange(len(r)) * brute,
        rtol=1e-12,
        atol=1e-9,
    )


@given(st.lists(st.floats(-10, 10), min_size=1, max_size=15), st.floats(0.0, 1.0))
def test_reference_agrees_with_torch_flip_cumsum_at_gamma_one(rewards, gamma):
    r = torch.tensor(rewards, dtype=torch.float64)
    undiscounted = torch.flip(torch.cumsum(torch.flip(r, [0]), 0), [0]).numpy()
    np.testing.assert_allclose(
        rc.reference(r.numpy(), 1.0, "reward_to_go"), undiscounted, rtol=1e-12, atol=1e-9
    )


@pytest.mark.parametrize("kind", rc.KINDS)
def test_every_mistake_is_visible_on_the_fixed_cases(kind):
    """No candidate equals the exact answer on all cases (else it could not be caught)."""
    cases = rc.return_cases()
    assert any(len(r) == 1 for r, _ in cases)
    assert {0.0, 1.0} <= {g for _, g in cases}
    for name in rc.candidates([1.0, 2.0], 0.5, kind):
        same = all(
            np.allclose(rc.candidates(r, g, kind)[name], rc.reference(np.array(r), g, kind))
            for r, g in cases
        )
        assert not same, name


# ------------------------------------------------------------------ bad input
def _loops(rewards, gamma):
    while True:
        pass


def _prints(rewards, gamma):
    for i in range(5000):
        print("G", i)
    return rtg_numpy(rewards, gamma)


def _inplace(rewards, gamma):
    for t in reversed(range(len(rewards) - 1)):
        rewards[t] += gamma * rewards[t + 1]
    return rewards


def _sets_threads(rewards, gamma):
    torch.set_num_threads(torch.get_num_threads() + 1)
    return rtg_numpy(rewards, gamma)


@pytest.mark.parametrize(
    ("fn", "diagnosis", "words"),
    [
        (lambda r, g: 1 / 0, "exception", "ZeroDivisionError"),
        (lambda r, g: None, "output", "forget `return`"),
        (lambda r, g: r * float("nan"), "output", "NaN"),
        (lambda r, g: rtg_numpy(r, g)[:, None], "output", "shape"),
        (lambda r, g: rtg_numpy(r, g)[:-1], "output", "shape"),
        (lambda r, g: {"G": 1}, "output", "dict"),
        (_prints, "output", "printed"),
        (_inplace, "in_place", "in place"),
        (_sets_threads, "global_state", "number of threads"),
    ],
)
def test_bad_input(fn, diagnosis, words, capfd):
    threads = torch.get_num_threads()
    report = check_returns(fn, kind="reward_to_go")
    assert report.verdict == "error" and report.diagnosis == diagnosis, report.message
    assert words in report.message
    assert torch.get_num_threads() == threads
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_timeout():
    start = time.perf_counter()
    report = check_returns(_loops, kind="return", timeout=0.3)
    assert report.diagnosis == "timeout" and "0.3 s" in report.message
    assert time.perf_counter() - start < 2.0


def test_python_float_for_length_one_and_scalar_kinds():
    def rtg_or_float(rewards, gamma):
        g = rtg_numpy(rewards, gamma)
        return float(g[0]) if len(g) == 1 else g

    assert check_returns(rtg_or_float, kind="reward_to_go").passed
    assert check_returns(lambda r, g: torch.tensor([ret_loop(r, g)]), kind="return").passed


def test_usage_errors():
    assert check_returns(rtg_numpy, kind="rtg").verdict == "error"
    r = check_returns(rtg_numpy, knd="return")
    assert r.verdict == "error" and "unknown option" in r.message


# ------------------------------------------------------------------ grading split
@pytest.mark.parametrize(
    ("fn", "kind"),
    [
        (rtg_torch_loop, "reward_to_go"),
        (m_come, "reward_to_go"),
        (ret_loop, "return"),
        (rtg_torch_loop, "return"),
        (drtg_numpy, "discounted_reward_to_go"),
        (lambda r, g: 1 / 0, "return"),
        (lambda r, g: r * math.inf, "reward_to_go"),
    ],
)
def test_round_trip_through_json(fn, kind):
    check = REGISTRY["returns"]
    measurement = check.measure(fn, kind=kind)
    wire = json.loads(json.dumps(measurement, allow_nan=False))
    direct = check(fn, kind=kind)
    assert check.judge(wire, kind=kind).to_dict() == direct.to_dict()
    assert (
        Report.from_dict(json.loads(json.dumps(direct.to_dict(), allow_nan=False))).passed
        == direct.passed
    )


def test_registry_entry():
    assert rc.CHECK is REGISTRY["returns"]
