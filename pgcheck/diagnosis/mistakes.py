"""The mistakes pgcheck names: each code once, with the formula it computes and its message.

The message says what to change, in one or two sentences, in the course's notation
(G_t = Σ_{t'≥t} γ^{t'−t} r_{t'}, R(τ) = Σ_t γ^t r_t, the correct weight of log π(a_t|s_t) is
γ^t G_t). To add a mistake: add a :class:`Mistake` here, and a reference estimator that makes it
to :mod:`pgcheck.diagnosis.estimators` (or a weight pattern to its ``PATTERNS``), so that
:mod:`pgcheck.diagnosis.matching` can recognise it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mistake:
    """A named mistake: its code, what it computes, and what the learner should change."""

    code: str
    formula: str
    message: str


#: Every mistake of a pseudo-loss, in the order they are listed to learners.
MISTAKES: tuple[Mistake, ...] = (
    Mistake(
        "correct",
        "w_t = γ^t G_t (or R(τ), or either minus b(s_t))",
        "Your pseudo-loss is a correct policy-gradient estimator.",
    ),
    Mistake(
        "sign_flipped",
        "L = +Σ_t w_t log π(a_t|s_t): E[ĝ] = −∇J",
        (
            "The sign is flipped: minimising your loss climbs down J. The optimiser minimises, so"
            " return the negative surrogate, L = −(1/N) Σ_i Σ_t γ^t G_t log π(a_t|s_t)."
        ),
    ),
    Mistake(
        "probs_instead_of_log_probs",
        "L = −Σ_t w_t π(a_t|s_t)",
        (
            "You weight the probability π(a_t|s_t) where the log-derivative trick needs log "
            "π(a_t|s_t): use log_probs (or −F.cross_entropy(logits, actions)), not probs."
        ),
    ),
    Mistake(
        "zero_gradient",
        "L = −Σ_t Σ_a π(a|s_t) q_t: ∇ Σ_a π(a|s) = 0",
        (
            "Your loss depends on θ but its expected gradient is exactly zero. If you summed "
            "softmax(logits)·q over all actions: the probabilities always add up to 1, so that "
            "sum does not move with θ. Weight log π(a_t|s_t) of the action that was actually "
            "taken."
        ),
    ),
    Mistake(
        "theta_leak",
        "w_t = γ^t (G_t − V_θ(s_t)) with V_θ not detached",
        (
            "θ leaks into your weights: `values` depends on θ and your loss differentiates it. "
            "Use values.detach() as the baseline, so only log π(a_t|s_t) is differentiated."
        ),
    ),
    Mistake(
        "action_dependent_baseline",
        "w_t = γ^t (G_t − b(s_t, a_t))",
        (
            "What you subtract from the return depends on the action a_t, so it is not a "
            "baseline: E[b(s_t,a_t) ∇log π(a_t|s_t)] ≠ 0. Subtract something that depends only on"
            " s_t (and the past), e.g. values.detach()."
        ),
    ),
    Mistake(
        "drops_current_reward",
        "w_t = γ^t (G_t − r_t) = γ^{t+1} G_{t+1}",
        (
            "Your reward-to-go leaves out r_t, the reward that a_t itself earned (it starts at "
            "r_{t+1}). Use G_t = r_t + γ G_{t+1}."
        ),
    ),
    Mistake(
        "reward_to_come",
        "w_t = γ^t Σ_{t'≤t} γ^{t−t'} r_{t'} (a forward loop G = r_t + γ·G)",
        (
            "You weight log π(a_t|s_t) by the rewards collected up to step t (a forward loop "
            "G = r_t + γ·G gives Σ_{t'≤t} γ^{t−t'} r_{t'}). An action cannot change the past: "
            "loop backwards from the last step, G_t = r_t + γ G_{t+1} = Σ_{t'≥t} γ^{t'−t} r_{t'}."
        ),
    ),
    Mistake(
        "reward_to_come_from_start",
        "w_t = Σ_{t'≤t} γ^{t'} r_{t'} (a running total of γ^{t'} r_{t'})",
        (
            "You weight log π(a_t|s_t) by the discounted rewards collected from the start up to "
            "step t (Σ_{t'≤t} γ^{t'} r_{t'}). An action cannot change the past: weight it by "
            "the rewards from t on, γ^t G_t with G_t = Σ_{t'≥t} γ^{t'−t} r_{t'}."
        ),
    ),
    Mistake(
        "immediate_reward",
        "w_t = γ^t r_t",
        (
            "You weight log π(a_t|s_t) by the immediate reward r_t only; an action also shapes "
            "the rewards after it. Use the reward-to-go γ^t G_t."
        ),
    ),
    Mistake(
        "undiscounted_return",
        "w_t = Σ_t r_t",
        "Your return ignores γ: use R(τ) = Σ_t γ^t r_t (the objective is discounted).",
    ),
    Mistake(
        "undiscounted_reward_to_go",
        "w_t = γ^t Σ_{t'≥t} r_{t'}",
        "Your reward-to-go ignores γ: use G_t = Σ_{t'≥t} γ^{t'−t} r_{t'}.",
    ),
    Mistake(
        "missing_gamma_t",
        "w_t = G_t",
        (
            "You weight log π(a_t|s_t) by G_t without the factor γ^t. For the discounted "
            "objective J = E[Σ_t γ^t r_t] the weight is γ^t G_t. (Dropping γ^t is a common "
            "convention, biased when γ < 1; pass accept_missing_gamma_t=True to accept it.)"
        ),
    ),
    Mistake(
        "discounted_twice",
        "w_t = γ^t R(τ)",
        (
            "R(τ) is already discounted from t = 0; multiplying it by γ^t again discounts twice. "
            "Use R(τ) at every step, or γ^t G_t."
        ),
    ),
    Mistake(
        "per_episode_mean",
        "L_i = −(1/T_i) Σ_t w_t log π(a_t|s_t)",
        (
            "You divide each episode's sum by its length T_i. Lengths differ and depend on θ, so "
            "this biases the gradient: sum over t, and average over episodes only."
        ),
    ),
    Mistake(
        "forgotten_mask",
        "padded steps t ≥ T_i enter with log π(a_t|s_t) ≠ 0",
        (
            "Padded steps after an episode ended enter your loss (log π is not zero there). "
            "Multiply by mask before summing over t."
        ),
    ),
    Mistake(
        "advantage_normalisation",
        "w_t = (w_t − mean_batch(w)) / std_batch(w)",
        (
            "You normalise the weights over the batch ((w − mean)/std). For a finite batch this "
            "is biased (checked exactly over every batch of B = 3, or over each episode's own "
            "steps with one_at_a_time=True); it is a popular variance-reduction trick,"
            " but it does not estimate ∇J. Subtract a baseline instead, or accept the bias "
            "knowingly."
        ),
    ),
    Mistake(
        "sum_over_batch",
        "L = −Σ_i Σ_t w_t log π: E[ĝ] = B ∇J",
        (
            "Your loss sums over the trajectories of the batch, so its gradient is B·∇J (B = the "
            "batch size). It points the right way; use .mean() over trajectories so that the "
            "learning rate does not depend on B."
        ),
    ),
    Mistake(
        "mean_over_steps",
        "L = −(1/BT) Σ_i Σ_t w_t log π, T = the batch's longest episode",
        (
            "Your loss averages over all B×T entries of the padded batch. In training T is the "
            "longest episode of each batch (what pad_sequence gives), so a batch of short "
            "episodes weighs more than a batch of long ones: the expected gradient is biased, "
            "not just scaled. Sum over t, then average over the trajectories (.sum(1).mean())."
        ),
    ),
    Mistake(
        "no_path_to_theta",
        "∇_θ L = 0 identically (log π detached)",
        (
            "Your loss has no path to θ: its gradient is missing. Don't call .detach(), .item(), "
            ".numpy() or torch.tensor(...) on log_probs or logits."
        ),
    ),
    Mistake(
        "discount_from_end",
        "w_t = γ^t Σ_{t'≥t} γ^{T_i−1−t'} r_{t'}",
        (
            "Your discount is counted back from the end of the episode (the last reward gets γ^0)."
            " The discount of r_{t'} in G_t is γ^{t'−t}, counted forward from step t."
        ),
    ),
    Mistake(
        "next_step_weight",
        "w_t = γ^t G_{t+1}",
        (
            "You weight log π(a_t|s_t) by G_{t+1}, the reward-to-go of the next step (an index "
            "shifted by one). a_t earns r_t too: use G_t = r_t + γ G_{t+1} at step t."
        ),
    ),
    Mistake(
        "gamma_t_twice",
        "w_t = γ^{2t} G_t",
        (
            "γ^t is applied twice: once inside your weights and once more outside, giving "
            "γ^{2t} G_t. The weight is γ^t G_t."
        ),
    ),
    Mistake(
        "argmax_action",
        "w_t log π(argmax_a π(a|s_t) | s_t)",
        (
            "You take log π of the most likely action (argmax of the logits), not of the action "
            "a_t that was actually taken. The score function is ∇log π(a_t|s_t) of the sampled "
            "action: gather log_probs at `actions` (or use dist.log_prob(actions))."
        ),
    ),
    Mistake(
        "log_probs_squared",
        "L = −Σ_t w_t (log π(a_t|s_t))²: ∇ = 2 log π ∇log π",
        (
            "You transform log π(a_t|s_t) before weighting it ((log π)², or a power of it): its "
            "gradient becomes 2·log π·∇log π, which vanishes as π(a_t|s_t) → 1 and changes sign"
            " and scale from step to step. Weight log π(a_t|s_t) itself: L = −Σ_t w_t log π."
        ),
    ),
    Mistake(
        "log_probs_clamped",
        "L = −Σ_t w_t clamp(log π(a_t|s_t), c): ∇ = 0 where the clamp is active",
        (
            "You clamp log π(a_t|s_t) (torch.clamp / clip): where the clamp is active its "
            "gradient is exactly 0, so those steps (the unlikely actions, for a lower bound) drop"
            " out of the gradient. Use log π unclamped (log_softmax / dist.log_prob never give "
            "−inf for a taken action); clamp only values you don't differentiate."
        ),
    ),
    Mistake(
        "gaussian_missing_log_sigma",
        "log π = −(a−μ)²/(2σ²) − ½ log 2π (no −log σ), σ learned",
        (
            "Your hand-written Gaussian log-density leaves out −log σ. With σ fixed that "
            "constant does not matter, but σ is learned here: without −log σ the gradient "
            "always pushes σ up. Use log N(a; μ, σ²) = −(a−μ)²/(2σ²) − log σ − ½ log 2π "
            "(or dist.log_prob(actions))."
        ),
    ),
    Mistake(
        "gaussian_sigma_for_variance",
        "log π = −(a−μ)²/(2σ) − log σ − ½ log 2π",
        (
            "Your Gaussian log-density divides by 2σ where 2σ² belongs: std is σ, the variance"
            " is std**2. Use −(a−μ)²/(2σ²) − log σ − ½ log 2π."
        ),
    ),
    Mistake(
        "gaussian_variance_as_std",
        "Normal(μ, σ²) instead of Normal(μ, σ)",
        (
            "You pass the variance σ² where torch.distributions.Normal expects the standard "
            "deviation σ (its `scale`). Use Normal(mean, std)."
        ),
    ),
    Mistake(
        "gaussian_mean_blocked",
        "log π = log N(a; μ.detach(), σ²): no gradient through the mean",
        (
            "No gradient reaches θ through the mean of your Gaussian: the mean is detached "
            "(.detach(), .item(), numpy or torch.tensor(...)), so only σ would learn. Keep "
            "mean on the autograd graph; detach only the returns."
        ),
    ),
    Mistake(
        "entropy_bonus",
        "E[ĝ] = a ∇J + β E[Σ_t ∇_θ H(π(·|s_t))] (or with γ^t H)",
        (
            "Your loss adds an entropy bonus: its expected gradient is {alpha} plus β times the "
            "gradient of the policy's entropy at the visited states (β ≈ {beta}). That is the "
            "gradient of a different objective (J plus an entropy bonus), a legitimate "
            "regulariser, not an error, but not ∇J: check the policy-gradient part alone "
            "(β = 0), or pass entropy_coef=β where the entropy objective is known in closed form"
            " (J + β E[Σ_t γ^t H]). If you never added an entropy term: a return built from "
            "log_probs (e.g. rewards minus α·log π) that you did not .detach() adds the same "
            "term once more (β = 2α instead of α); detach the return. (Returns, rewards and "
            "q_values from the environment carry no gradient, so detaching them changes nothing.)"
        ),
    ),
)

#: code -> message.
MESSAGES: dict[str, str] = {m.code: m.message for m in MISTAKES}


def message_for(code: str) -> str:
    """The message for a (possibly combined, '+'-joined) diagnosis code."""
    return " ".join(MESSAGES.get(part, "") for part in code.split("+")).strip()


# --------------------------------------------------------------------------- verdict texts
#: The texts of the pseudo-loss verdicts that are not a single mistake's message.
UNBIASED = "{correct} E[−∇L] = ∇J on all {n} instances (largest relative error {err:.1e}).{note}"
UNBIASED_MIXING = " It mixes trajectories in a batch and is still unbiased ({where})."
SCALED = (
    "Your loss's expected gradient is a positive multiple of ∇J (α = {alphas}): it points "
    "the right way, scaled."
)
SCALED_MIXING = (
    " Your loss mixes trajectories (checked exactly over every batch of B = {B}); a baseline "
    "that includes the trajectory itself (e.g. the batch mean) scales ∇J by (1 − 1/B) = "
    "{one_minus:.4g}: unbiased up to that factor, which is harmless."
)
ACCEPTED_CONVENTION = (
    "Accepted by option (accept_missing_gamma_t=True), not unbiased: your loss follows the "
    "common convention Σ_t G_t ∇log π(a_t|s_t) without γ^t, which is biased for the "
    "discounted objective when γ < 1 (E[−∇L] ≠ ∇J here) but widely used."
)
ACCEPTED_SCALED = " It is a positive multiple (β = {beta:.4g}) of that convention's gradient."
UNRECOGNISED = (
    "Your pseudo-loss is biased: E[−∇L] differs from ∇J by more than a factor "
    "(relative residual {residual:.2g}). Check that you weight "
    "log π(a_t|s_t) of the taken action by γ^t G_t (or R(τ)), minus a baseline "
    "that depends only on s_t, with the mask applied."
)
ONE_AT_A_TIME = (
    "checked one trajectory at a time (B = 1), as asked with one_at_a_time=True; "
    "training calls the loss on padded batches [B, T], so check it without that option too."
)
NUMBERS = "\nOn {problem}: ∇J = {grad_j}, E[−∇L] = {expected}."
ALPHA_VARIES = (
    "α differs between instances ({alphas}): your loss's scale depends on the problem (a mean "
    "over padded steps gives α = 1/T, which changes with the episode lengths), so the step "
    "size of training changes with the batch."
)
UNRECOGNISED_WHERE = "\n{where}"
LEAK = (
    "Your loss differentiates `values`, the exact V^π_θ(s_t) that pgcheck provides. That input "
    "is privileged: it depends on θ through the true value function, which no learned critic "
    "gives you, so differentiating it is never a policy gradient you could use in training. "
    "Here (on {problem}) the part of E[−∇L] that flows through `values` is {values_part}, and "
    "the part through "
    "the policy's log-probabilities is {policy_part}; in total E[−∇L] = {total}. Use "
    "values.detach() (a baseline), so only log π(a_t|s_t) is differentiated."
)
#: One line per symbol/column of the pseudo-loss report's table (shown after the table).
LEGEND = {
    "α": (
        "the scale in E[−∇L] = α ∇J + r: the projection ⟨E[−∇L], ∇J⟩ / ‖∇J‖² (1 for a correct "
        "estimator, −1 for a flipped sign, B for a sum over the batch)."
    ),
    "‖r‖/‖E[−∇L]‖": (
        "the residual: the part of your expected gradient not along ∇J, relative to its size "
        "(0 when it points along ∇J; > 0 means a bias no learning rate can fix)."
    ),
}
NAN_ONE_AT_A_TIME = (
    "with one_at_a_time=True every batch holds one trajectory: a normalisation over the batch "
    "((R − mean)/std, advantage normalisation) divides by a standard deviation of 0 there. "
    "Batch normalisation is biased anyway (advantage_normalisation); check without the option."
)
ACTS_AS_ENTROPY = (
    " In expectation this equals ∇J plus β·(the gradient of the policy's entropy), β ≈ {beta}: "
    "subtracting log π(a_t|s_t) (or the logit of a_t) from the return acts as an entropy bonus,"
    " but it is not a baseline."
)
