"""The verdict of the pseudo-loss check, as an ordered list of small named rules.

Each rule looks at the :class:`Evidence` (the learner's exact E[ĝ] on every instance, ∇J, and
the decomposition E[ĝ] = α ∇J + r) and either returns the :class:`~pgcheck.report.Report` or
passes (None) to the next rule. :data:`RULES` is the order; the last rule always answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from torch import Tensor

from pgcheck.diagnosis import mistakes as text
from pgcheck.diagnosis.matching import (
    RTOL,
    Found,
    decompose,
    diagnose,
    diagnose_offsets,
    diagnose_weights,
    entropy_bonus,
    where_weights_differ,
)
from pgcheck.diagnosis.mistakes import MESSAGES, message_for
from pgcheck.problems import Problem
from pgcheck.report import Report, Row
from pgcheck.rules import Rule, decide

CHECK = "pseudo_loss"


@dataclass
class Evidence:
    """What the rules decide on."""

    probs: list[Problem]
    gs: list[Tensor]  # E[ĝ] per instance
    gjs: list[Tensor]  # ∇J per instance
    mode: str  # "separable" or "mixing"
    reductions: set[str]  # "mean", "sum", "one-at-a-time", "mixing"
    leaks: bool  # the loss differentiates the θ-dependent `values`
    weights: dict[str, Any] | None  # the learner's exact per-step weights, if extracted
    accept_missing_gamma_t: bool
    batch: int = 3  # the batch size of the mixing check
    padding_dependent: bool = False  # the loss changes with the batch's padded length
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figure_data: dict[str, Any] | None = None
    #: E[ĝ] through each θ-dependent input per instance (separable mode only)
    leaf_parts: list[dict[str, Tensor]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # the inputs the loss asked for
    #: on every A ≥ 3 instance measured, the loss only weights log π(a_t|s_t) of the taken
    #: actions, so it cannot contain an entropy term (whatever its expectation looks like)
    log_pi_taken_only: bool = False

    @cached_property
    def parts(self) -> list[tuple[float, float, float]]:
        """(α, ‖r‖/‖E[ĝ]‖, ‖E[ĝ] − ∇J‖/‖∇J‖) per instance."""
        return [decompose(g, gj) for g, gj in zip(self.gs, self.gjs, strict=True)]

    @property
    def alphas(self) -> list[float]:
        return [a for a, _, _ in self.parts]

    @property
    def parallel(self) -> bool:
        """E[ĝ] ∥ ∇J on every instance (r = 0)."""
        return all(rr <= RTOL for _, rr, _ in self.parts)

    @property
    def alphas_differ(self) -> bool:
        """α is not the same on every instance (relative difference > 1e-6)."""
        a = self.alphas
        return max(a) - min(a) > 1e-6 * max(abs(x) for x in a)

    @cached_property
    def entropy(self) -> tuple[str, float, float] | None:
        """(code, a, β) when E[ĝ] = a ∇J + β E[Σ_t ∇H(π(·|s_t))] (an entropy bonus)."""
        if self.mode != "separable" or self.log_pi_taken_only:
            return None
        return entropy_bonus(self.gs, self.gjs, self.probs)

    @cached_property
    def acts_as_entropy(self) -> tuple[str, float, float] | None:
        """An entropy bonus in expectation only, from weights of log π(a_t|s_t) (e.g. a
        "baseline" that is log π(a_t|s_t) or the logit of a_t)."""
        if self.mode != "separable" or not self.log_pi_taken_only:
            return None
        return entropy_bonus(self.gs, self.gjs, self.probs)

    @cached_property
    def found(self) -> Found | None:
        """The recognised mistake (code, β): an entropy bonus first (any coefficient, with or
        without γ^t), then by weights, then by gradients."""
        if self.entropy is not None:
            return self.entropy[0], self.entropy[1]
        # an added discounted entropy term needs the entropy: a loss given `dist` or `std`
        entropy_possible = (
            self.mode != "mixing"
            and not self.log_pi_taken_only
            and bool({"dist", "std"} & set(self.names))
        )
        offset = diagnose_offsets(self.gs, self.probs) if entropy_possible else None
        return offset or diagnose_weights(self.weights) or diagnose(self.gs, self.probs, self.mode)

    def numbers(self) -> str:
        """The instance where the vectors differ most, gradcheck-style."""
        i = max(range(len(self.gs)), key=lambda k: self.parts[k][1])
        return text.NUMBERS.format(
            problem=self.probs[i].name, grad_j=_vec(self.gjs[i]), expected=_vec(self.gs[i])
        )

    def report(
        self,
        passed: bool,
        verdict: str,
        message: str,
        scale: float | None,
        diagnosis: str | None = None,
    ) -> Report:
        return Report(
            passed,
            verdict,
            message,
            scale=scale,
            diagnosis=diagnosis,
            check=CHECK,
            rows=self.rows,
            notes=self.notes
            + (
                [text.ALPHA_VARIES.format(alphas=_alphas(self.alphas))]
                if self.parallel and self.alphas_differ
                else []
            ),
            figure_data=self.figure_data,
            legend=dict(text.LEGEND) if self.rows else {},
        )


def unbiased(ev: Evidence) -> Report | None:
    """E[ĝ] = ∇J on every instance."""
    max_err = max(err for _, _, err in ev.parts)
    if max_err > RTOL:
        return None
    where = f"over every batch of B = {ev.batch}" if ev.mode == "mixing" else "exactly"
    note = text.UNBIASED_MIXING.format(where=where) if ev.mode == "mixing" else ""
    return ev.report(
        True,
        "unbiased",
        text.UNBIASED.format(correct=MESSAGES["correct"], n=len(ev.probs), err=max_err, note=note),
        1.0,
    )


def zero_gradient(ev: Evidence) -> Report | None:
    """E[ĝ] = 0 exactly although ∇J ≠ 0 (e.g. Σ_a π(a|s) q summed over all actions)."""
    if not all(
        float(g.abs().max()) <= 1e-12 * float(gj.abs().max())
        for g, gj in zip(ev.gs, ev.gjs, strict=True)
    ):
        return None
    return ev.report(
        False, "biased", message_for("zero_gradient") + ev.numbers(), 0.0, "zero_gradient"
    )


def theta_leak(ev: Evidence) -> Report | None:
    """The loss differentiates the θ-dependent values V(s_t) (privileged: fails even when
    E[ĝ] happens to equal ∇J). The message splits E[ĝ] into the part through ``values``
    and the part through the policy, each written as α ∇J + r."""
    if not ev.leaks:
        return None
    msg = message_for("theta_leak")
    for parts, gj, g, prob in zip(ev.leaf_parts, ev.gjs, ev.gs, ev.probs, strict=False):
        if "values" not in parts:
            continue
        v = parts["values"]
        msg = text.LEAK.format(
            problem=prob.name,
            values_part=_as_multiple(v, gj),
            policy_part=_as_multiple(g - v, gj),
            total=_as_multiple(g, gj),
        )
        break
    return ev.report(False, "biased", msg + ev.numbers(), ev.alphas[0], "theta_leak")


def _as_multiple(v: Tensor, gj: Tensor) -> str:
    """v written as α·∇J (+ r): "2·∇J", "0.98·∇J + r (‖r‖ = 12 % of it)", "0"."""
    if float(v.norm()) <= 1e-12 * float(gj.norm()):
        return "0"
    alpha, rr, _ = decompose(v, gj)
    head = "∇J" if abs(alpha - 1) <= 1e-6 else f"{alpha:.4g}·∇J"
    return head if rr <= RTOL else f"{head} + r (‖r‖ = {rr:.2g} of its size)"


def scaled(ev: Evidence) -> Report | None:
    """E[ĝ] = α ∇J with α > 0: the right direction (passes, with the reason for α)."""
    if not (ev.parallel and all(a > 0 for a in ev.alphas)):
        return None
    code = _scaled_code(ev.reductions, ev.alphas, ev.probs)
    msg = message_for(code) if code else text.SCALED.format(alphas=_alphas(ev.alphas))
    if ev.mode == "mixing" and not code:
        B = ev.batch
        msg += text.SCALED_MIXING.format(B=B, one_minus=1 - 1 / B)
    return ev.report(True, "scaled", msg, ev.alphas[0], code)


def padding_dependent(ev: Evidence) -> Report | None:
    """Parallel to ∇J at one padded length, but the loss changes with the padded length T
    of the batch (a mean over all B×T entries): in training, where T is each batch's
    longest episode, short batches weigh more — biased."""
    if not (ev.padding_dependent and ev.parallel and all(a > 0 for a in ev.alphas)):
        return None
    return ev.report(
        False,
        "biased",
        message_for("mean_over_steps") + ev.numbers(),
        ev.alphas[0],
        "mean_over_steps",
    )


def sign_flipped(ev: Evidence) -> Report | None:
    """E[ĝ] = α ∇J with α < 0."""
    if not (ev.parallel and all(a < 0 for a in ev.alphas)):
        return None
    return ev.report(
        False, "biased", message_for("sign_flipped") + ev.numbers(), ev.alphas[0], "sign_flipped"
    )


def accepted_convention(ev: Evidence) -> Report | None:
    """Σ_t G_t ∇log π without γ^t, accepted by ``accept_missing_gamma_t=True``."""
    if not (
        ev.accept_missing_gamma_t
        and not ev.padding_dependent  # a mean over padded B×T entries is not the convention
        and ev.found is not None
        and ev.found[0] == "missing_gamma_t"
    ):
        return None
    beta = ev.found[1]
    exact = abs(beta - 1) <= 1e-6
    note = "" if exact else text.ACCEPTED_SCALED.format(beta=beta)
    return ev.report(beta > 0, "accepted", text.ACCEPTED_CONVENTION + note, beta, "missing_gamma_t")


def named_mistake(ev: Evidence) -> Report:
    """Biased: name the mistake when it is recognised, else say what the weights should be."""
    code = None
    if ev.found is not None:
        code, beta = ev.found
        if beta < 0 and code not in SIGN_FREE:
            code = "sign_flipped+" + code
        if ev.padding_dependent and not {"mean_over_steps", "forgotten_mask"} & set(
            code.split("+")
        ):
            code += "+mean_over_steps"  # the weights name one mistake, the padding probe another
    if code is None:
        msg = text.UNRECOGNISED.format(residual=max(rr for _, rr, _ in ev.parts))
        where = where_weights_differ(ev.weights)
        if where:
            msg += text.UNRECOGNISED_WHERE.format(where=where)
    elif "entropy_bonus" in code.split("+"):
        # (code, a, β) from the general fit, else the offset match (a = 1, β = its factor)
        found_beta = ev.found[1] if ev.found is not None else 1.0
        _, a, b = ev.entropy if ev.entropy is not None else (code, 1.0, found_beta)
        alpha = "∇J" if abs(a - 1) <= 1e-6 else f"{a:.4g}·∇J"
        rest = message_for(code.replace("entropy_bonus", "").strip("+"))
        msg = MESSAGES["entropy_bonus"].format(alpha=alpha, beta=f"{b:.4g}") + (
            " " + rest if rest else ""
        )
    else:
        msg = message_for(code)
    if ev.acts_as_entropy is not None and ev.entropy is None:
        msg += text.ACTS_AS_ENTROPY.format(beta=f"{ev.acts_as_entropy[2]:.4g}")
    return ev.report(False, "biased", msg + ev.numbers(), ev.alphas[0], code)


#: Codes whose factor β may be negative without meaning a flipped sign.
SIGN_FREE = frozenset({"log_probs_squared"})


#: The rules in the order they are tried.
RULES: tuple[Rule[Evidence], ...] = (
    theta_leak,
    unbiased,
    zero_gradient,
    padding_dependent,
    scaled,
    sign_flipped,
    accepted_convention,
    named_mistake,
)


def verdict(ev: Evidence) -> Report:
    """The report of the first rule that answers."""
    return decide(RULES, ev)


def _scaled_code(reductions: set[str], alphas: list[float], probs: list[Problem]) -> str | None:
    if reductions == {"sum"}:
        return "sum_over_batch"
    if all(abs(a * p.horizon - 1) < 1e-6 for a, p in zip(alphas, probs, strict=True)):
        return "mean_over_steps" if any(p.horizon > 1 for p in probs) else None
    return None


def _alphas(alphas: list[float]) -> str:
    if max(alphas) - min(alphas) <= 1e-9 * max(abs(a) for a in alphas):
        return f"{alphas[0]:.4g}"
    return ", ".join(f"{a:.4g}" for a in alphas)


def _vec(v: Tensor) -> str:
    return "[" + ", ".join(f"{x:.4f}" for x in v.tolist()[:5]) + (", …]" if v.numel() > 5 else "]")
