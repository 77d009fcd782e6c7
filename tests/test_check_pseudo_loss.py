"""check_pseudo_loss: correct variants pass, each mistake fails with its diagnosis, and the
exact expectation agrees with independent computations."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

import pgcheck
from pgcheck import problems
from pgcheck.checks.pseudo_loss import judge, measure
from pgcheck.diagnosis import estimators as E


def disc(gamma, T):
    return gamma ** torch.arange(T, dtype=torch.float64)


# ----------------------------------------------------------------------------- correct bank
@pytest.mark.parametrize("name", sorted(E.CORRECT))
def test_correct_variants_pass(name):
    report = pgcheck.check_pseudo_loss(E.CORRECT[name])
    assert report.passed, report
    assert report.verdict == "unbiased"
    assert report.diagnosis is None
    assert abs(report.scale - 1) < 1e-9


def lecture_form(logits, actions, q_values, gamma, mask):
    """The lecture's pseudo-code in PyTorch, with the γ^t factor."""
    nll = F.cross_entropy(logits.flatten(0, 1), actions.flatten(), reduction="none")
    weighted = nll.view_as(q_values) * q_values * disc(gamma, mask.shape[1]) * mask
    return weighted.sum(1).mean()


def tutorial_form(log_probs, returns, mask):
    """The tutorial's form: −(1/N) Σ_i R(τ_i).detach() Σ_t log π(a_t|s_t)."""
    loss = 0.0
    for i in range(log_probs.shape[0]):
        loss = loss - returns[i].detach() * (log_probs[i] * mask[i]).sum()
    return loss / log_probs.shape[0]


def dist_form(dist, actions, rewards, gamma, mask):
    """Using a torch.distributions object and computing G_t by a backward loop."""
    T = rewards.shape[1]
    g = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
    for t in reversed(range(T)):
        running = rewards[:, t] + gamma * running
        g[:, t] = running
    return -(dist.log_prob(actions) * g * disc(gamma, T) * mask).sum(1).mean()


def observation_baseline(log_probs, q_values, observations, gamma, mask):
    """A baseline b(s) from a fixed linear function of the one-hot state: unbiased."""
    b = observations @ torch.linspace(-1, 1, observations.shape[-1], dtype=torch.float64)
    return -((q_values - b) * disc(gamma, mask.shape[1]) * log_probs * mask).sum(1).mean()


def gaussian_reinforce(mean, std, actions, returns):
    """Gaussian policy written out by hand: log N(a; μ, σ²)."""
    log_prob = -0.5 * ((actions - mean) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)
    return -(returns[:, None] * log_prob).sum(1).mean()


def batch_mean_baseline(log_probs, returns, mask):
    """R_i − mean_j R_j including i itself: scales ∇J by (1 − 1/B)."""
    adv = returns - returns.mean()
    return -(adv[:, None] * log_probs * mask).sum(1).mean()


@pytest.mark.parametrize("fn", [lecture_form, tutorial_form, dist_form, observation_baseline])
def test_learner_style_variants_pass(fn):
    report = pgcheck.check_pseudo_loss(fn)
    assert report.passed and report.verdict == "unbiased", report


def test_gaussian_only_loss_runs_on_gaussian_problems():
    report = pgcheck.check_pseudo_loss(gaussian_reinforce)
    assert report.passed, report
    assert [r.instance for r in report.rows] == ["gaussian", "lqg-sigma", "lqg-noise-undiscounted"]


def test_batch_mean_baseline_is_scaled_by_one_minus_one_over_b():
    report = pgcheck.check_pseudo_loss(batch_mean_baseline)
    assert report.passed and report.verdict == "scaled", report
    assert abs(report.scale - 2 / 3) < 1e-9  # 1 − 1/B with B = 3 in the batch check
    assert "B = 3" in report.message


# ----------------------------------------------------------------------------- mistakes
EXPECTED = {
    "sign_flipped": ("biased", "sign_flipped"),
    "probs_instead_of_log_probs": ("biased", "probs_instead_of_log_probs"),
    "zero_gradient": ("biased", "zero_gradient"),
    "theta_leak": ("biased", "theta_leak"),
    "action_dependent_baseline": ("biased", "action_dependent_baseline"),
    "drops_current_reward": ("biased", "drops_current_reward"),
    "reward_to_come": ("biased", "reward_to_come"),
    "reward_to_come_from_start": ("biased", "reward_to_come_from_start"),
    "immediate_reward": ("biased", "immediate_reward"),
    "missing_gamma_t": ("biased", "missing_gamma_t"),
    "discount_from_end": ("biased", "discount_from_end"),
    "per_episode_mean": ("biased", "per_episode_mean"),
    "forgotten_mask": ("biased", "forgotten_mask"),
    "advantage_normalisation": ("biased", "advantage_normalisation"),
    "sum_over_batch": ("scaled", "sum_over_batch"),
    "mean_over_steps": ("biased", "mean_over_steps"),
    "no_path_to_theta": ("error", "no_path_to_theta"),
}


def test_every_mistake_has_an_expectation():
    assert set(EXPECTED) == set(E.MISTAKES)


@pytest.mark.parametrize("code", sorted(E.MISTAKES))
def test_mistakes_get_their_diagnosis(code):
    report = pgcheck.check_pseudo_loss(E.MISTAKES[code])
    verdict, diagnosis = EXPECTED[code]
    assert report.verdict == verdict, report
    assert report.diagnosis == diagnosis, report
    assert report.passed == (verdict == "scaled")
    assert report.message.strip()
    if verdict == "biased":
        assert "∇J = [" in report.message  # shows the numbers, gradcheck-style


def test_sum_over_batch_scale_is_the_batch_size():
    assert pgcheck.check_pseudo_loss(E.sum_over_batch, batch_size=32).scale == pytest.approx(32)


def test_forum_proposal_has_exactly_zero_gradient():
    """The forum question's softmax(logits) * q, in the lecture's tensors."""

    def forum(logits, q_values):
        return -(torch.softmax(logits, -1) * q_values[..., None]).mean()

    report = pgcheck.check_pseudo_loss(forum)
    assert report.diagnosis == "zero_gradient" and not report.passed
    assert all(max(abs(x) for x in r.columns["E[−∇L] (your loss)"]) < 1e-15 for r in report.rows)


def test_missing_gamma_t_is_caught_only_when_gamma_below_one():
    fn = E.MISTAKES["missing_gamma_t"]
    assert pgcheck.check_pseudo_loss(fn, problem="mdp-tabular-undiscounted").passed
    assert not pgcheck.check_pseudo_loss(fn, problem="mdp-linear").passed


def test_accept_missing_gamma_t_option():
    fn = E.MISTAKES["missing_gamma_t"]
    report = pgcheck.check_pseudo_loss(fn, accept_missing_gamma_t=True)
    assert report.passed and report.diagnosis == "missing_gamma_t"
    assert pgcheck.check_pseudo_loss(E.reward_to_go, accept_missing_gamma_t=True).passed
    assert not pgcheck.check_pseudo_loss(
        E.MISTAKES["reward_to_come"], accept_missing_gamma_t=True
    ).passed


def test_missing_gamma_t_bias_is_a_few_percent():
    """The subtlest mistake is still far above the tolerance (1e-6)."""
    report = pgcheck.check_pseudo_loss(E.MISTAKES["missing_gamma_t"])
    errors = [r.columns["‖E[−∇L] − ∇J‖/‖∇J‖"] for r in report.rows]
    assert max(errors) > 1e-2


def test_combined_mistakes_are_named_together():
    def two_mistakes(log_probs, q_values, mask):  # no γ^t and a sum over the batch
        return -(q_values * log_probs * mask).sum()

    report = pgcheck.check_pseudo_loss(two_mistakes)
    assert not report.passed and report.diagnosis == "missing_gamma_t"
    assert report.scale > 4  # the sum over B = 8 shows in α

    def sign_and_mask(log_probs, returns):
        return (returns[:, None] * log_probs).sum(1).mean()

    report = pgcheck.check_pseudo_loss(sign_and_mask)
    assert report.diagnosis == "sign_flipped+forgotten_mask"


def test_gaussian_mistakes():
    def sign(mean, std, actions, returns):
        return -gaussian_reinforce(mean, std, actions, returns)

    def density(dist, actions, returns):
        return -(returns[:, None] * dist.log_prob(actions).exp()).sum(1).mean()

    assert pgcheck.check_pseudo_loss(sign).diagnosis == "sign_flipped"
    report = pgcheck.check_pseudo_loss(density)
    assert not report.passed and report.verdict == "biased"


# ----------------------------------------------------------------------------- independence
def naive_expected_gradient(fn, prob):
    """Σ_τ p(τ) (−∇_θ L([τ])) with autograd straight to θ, one trajectory at a time."""
    traj, p = prob.support()
    theta = prob.theta0.clone().requires_grad_(True)
    logits_table = prob.policy.logits(theta)
    values_table = prob.q_and_v(theta)[1]
    total = torch.zeros((), dtype=torch.float64)
    for j in range(len(traj)):
        one = traj.select([j])
        logits = logits_table[one.states]
        T = one.states.shape[1]
        inputs = {
            "log_probs": torch.log_softmax(logits, -1).gather(-1, one.actions[..., None])[..., 0],
            "logits": logits,
            "probs": torch.softmax(logits, -1),
            "actions": one.actions,
            "rewards": one.rewards,
            "mask": one.mask,
            "gamma": one.gamma,
            "q_values": one.reward_to_go,
            "returns": one.returns,
            "lengths": one.lengths,
            "values": values_table[torch.arange(T)[None], one.states] * one.mask,
        }
        names = fn.__code__.co_varnames[: fn.__code__.co_argcount]
        total = total + p[j] * fn(**{k: inputs[k] for k in names})
    (grad,) = torch.autograd.grad(total, theta)
    return -grad


@pytest.mark.parametrize(
    "fn",
    [
        E.reward_to_go,
        E.MISTAKES["missing_gamma_t"],
        E.MISTAKES["probs_instead_of_log_probs"],
        E.MISTAKES["theta_leak"],
        E.MISTAKES["forgotten_mask"],
        E.state_value_baseline,
        lecture_form,
    ],
)
@pytest.mark.parametrize("name", ["mdp-linear", "mdp-mlp"])
def test_exact_expectation_matches_a_naive_enumeration(fn, name):
    prob = problems.get(name)
    m = measure(fn, problem=name)
    assert m["instances"][0]["reduction"] == "mean"
    got = torch.tensor(m["instances"][0]["expected_grad"], dtype=torch.float64)
    want = naive_expected_gradient(fn, prob)
    assert float((got - want).abs().max()) < 1e-12 * max(1.0, float(want.abs().max()))


def test_exact_expectation_matches_monte_carlo():
    """A Monte Carlo estimate of E[−∇L] from 200k simulated trajectories, within 5 SE."""
    prob = problems.get("mdp-linear")
    batch = prob.sample(200_000, generator=torch.Generator().manual_seed(7))
    theta = prob.theta0.clone().requires_grad_(True)
    logp = torch.log_softmax(prob.policy.logits(theta), -1)[batch.states, batch.actions]
    fn = E.MISTAKES["missing_gamma_t"]
    # per-trajectory gradients via the score: −∇ℓ_i = Σ_t w_it ∇log π(a_t|s_t)
    score = prob.policy.score(prob.theta0)[batch.states, batch.actions]  # [N, T, P]
    per_traj = torch.einsum("nt,ntp->np", batch.reward_to_go * batch.mask, score)
    mean, se = per_traj.mean(0), per_traj.std(0) / math.sqrt(len(batch))
    exact = torch.tensor(
        measure(fn, problem="mdp-linear")["instances"][0]["expected_grad"], dtype=torch.float64
    )
    assert ((mean - exact).abs() < 5 * se).all()
    assert logp.requires_grad  # the sampled batch is usable for a real loss too


# ----------------------------------------------------------------------------- the report
def test_report_renders_and_round_trips():
    report = pgcheck.check_pseudo_loss(E.MISTAKES["missing_gamma_t"])
    text = str(report)
    assert "FAILED" in text and "missing_gamma_t" in text and "∇J (exact)" in text
    html = report._repr_html_()
    assert "<table" in html and "missing_gamma_t" in html
    data = json.loads(json.dumps(report.to_dict()))
    again = pgcheck.Report.from_dict(data)
    assert again.to_dict() == report.to_dict()
    assert not bool(report) and bool(pgcheck.check_pseudo_loss(E.reward_to_go))
    fig = report.plot()
    assert fig.axes and fig.axes[0].get_title().startswith("mdp-linear")


def test_measure_and_judge_split_through_json():
    """What an isolated grader does: measure in one place, plain JSON, judge in another."""
    for fn in (E.reward_to_go, E.MISTAKES["reward_to_come"], E.leave_one_out_baseline):
        m = json.loads(json.dumps(measure(fn)))
        assert judge(m).to_dict() == pgcheck.check_pseudo_loss(fn).to_dict() | {
            "notes": judge(m).notes
        }


def test_verdicts_are_identical_on_every_run():
    a = pgcheck.check_pseudo_loss(E.MISTAKES["per_episode_mean"]).to_dict()
    b = pgcheck.check_pseudo_loss(E.MISTAKES["per_episode_mean"]).to_dict()
    assert a == b


def test_custom_problem_and_problem_lists():
    prob = problems.random_mdp(99, gamma=0.7, policy="mlp")
    report = pgcheck.check_pseudo_loss(E.reward_to_go, problem=[prob, "bandit"])
    assert report.passed and [r.instance for r in report.rows] == [prob.name, "bandit"]
    report = pgcheck.check_pseudo_loss(E.reward_to_go, problem="discounted")
    assert report.verdict == "error" and "finite" in report.message


# ----------------------------------------------------------------------------- properties
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@given(
    seed=st.integers(0, 100_000),
    policy=st.sampled_from(["tabular", "linear", "mlp"]),
    gamma=st.sampled_from([0.6, 0.9]),
    horizon=st.integers(2, 4),
)
def test_properties_on_random_instances(seed, policy, gamma, horizon):
    """On any random instance with γ < 1: correct estimators pass, and reward-to-go without
    γ^t or without r_t fails, with its diagnosis."""
    prob = problems.random_mdp(
        seed, n_states=3, n_actions=2, horizon=horizon, gamma=gamma, policy=policy
    )
    for fn in (E.reward_to_go, E.full_return, E.state_value_baseline):
        assert pgcheck.check_pseudo_loss(fn, problem=prob).verdict == "unbiased"
    for code in ("missing_gamma_t", "drops_current_reward"):
        report = pgcheck.check_pseudo_loss(E.MISTAKES[code], problem=prob)
        assert not report.passed and report.diagnosis == code


def test_a_loss_that_only_works_on_one_trajectory_is_checked_in_a_loop():
    def one_trajectory(log_probs, returns, mask):
        return -returns.item() * (log_probs * mask).sum()

    def one_trajectory_no_mask(log_probs, returns):
        return -returns.item() * log_probs.sum()

    refused = pgcheck.check_pseudo_loss(one_trajectory)
    assert refused.verdict == "error" and "one_at_a_time=True" in refused.message, refused
    assert "returns [" in refused.message and "item" in refused.message  # shapes, learner's line
    report = pgcheck.check_pseudo_loss(one_trajectory, one_at_a_time=True)
    assert report.passed and any("one trajectory at a time" in n for n in report.notes)
    # a batch of one episode is padded to its own length: no padding, so no mask is needed
    no_mask = pgcheck.check_pseudo_loss(one_trajectory_no_mask, one_at_a_time=True)
    assert no_mask.passed, no_mask


def test_a_broadcasting_bug_is_an_error_not_a_silent_fallback():
    """returns [B] times log_probs [B, T]: raises when B ≠ T, silently wrong when B = T."""

    def broadcast(log_probs, returns, mask):
        return -(returns * (log_probs * mask)).sum(1).mean()

    report = pgcheck.check_pseudo_loss(broadcast)
    assert not report.passed and report.verdict == "error", report
    assert "log_probs [" in report.message and "returns [" in report.message
    assert "returns * (log_probs * mask)" in report.message  # the learner's own line


def test_batches_never_have_b_equal_to_t_a_or_s():
    from pgcheck.exact.expectation import batch_dims, batch_rows, make_batch

    for name in problems.SUITE_NAMES + problems.MIXING_NAMES:
        prob = problems.get(name)
        traj = prob.support()[0]
        rows = batch_rows(list(range(len(traj))), batch_dims(prob, traj))
        assert len(rows) not in batch_dims(prob, traj), name
        assert make_batch(traj, [0]).states.shape[1] == int(traj.lengths[0])  # padded to longest


@given(c=st.floats(0.01, 100.0) | st.floats(-100.0, -0.01))
def test_probe_scale_of_a_multiple_of_a_correct_loss(c):
    """The decomposition E[ĝ] = α∇J + r recovers α = c exactly, and the sign when c < 0."""

    def scaled(log_probs, q_values, gamma, mask):
        return c * E.reward_to_go(log_probs, q_values, gamma, mask)

    report = pgcheck.check_pseudo_loss(scaled, problem=["mdp-linear", "bandit"])
    assert report.scale == pytest.approx(c, rel=1e-9)
    if abs(c - 1) < 1e-9:
        assert report.verdict == "unbiased"
    elif c > 0:
        assert report.passed and report.verdict == "scaled"
    else:
        assert not report.passed and report.diagnosis == "sign_flipped"


@given(B=st.integers(2, 40))
def test_probe_sum_over_the_batch_reports_the_batch_size(B):
    report = pgcheck.check_pseudo_loss(E.sum_over_batch, batch_size=B, problem="mdp-mlp")
    assert report.diagnosis == "sum_over_batch" and report.scale == pytest.approx(B)
