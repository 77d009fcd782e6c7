"""The result of a check: a verdict, a message in the course's notation, and the numbers.

A :class:`Report` is truthy when the check passed, prints as plain text, renders as an HTML
table in Jupyter, converts to plain JSON-able data (:meth:`Report.to_dict`) and back, and can
draw a picture when the check recorded one (:meth:`Report.plot`).
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

#: Verdicts of :func:`pgcheck.check_pseudo_loss`; the smaller checks use "correct" / "wrong".
VERDICTS = ("unbiased", "scaled", "biased", "correct", "wrong", "error", "accepted")


@dataclass
class Row:
    """One line of the report's table: an instance and the vectors compared on it."""

    instance: str
    columns: dict[str, list[float] | float | str] = field(default_factory=dict)


@dataclass
class Report:
    """What a check found.

    Attributes:
        passed: whether the learner's code is accepted.
        verdict: ``"unbiased"``, ``"scaled"``, ``"biased"`` or ``"error"`` for pseudo-losses;
            ``"correct"``, ``"wrong"`` or ``"error"`` for the smaller checks.
        scale: α in E[ĝ] = α ∇J + r (pseudo-losses), else None.
        diagnosis: short code of the recognised mistake, or None.
        message: what is wrong and what to change, in one or two sentences.
        check: the name of the check that produced the report.
        rows: per-instance numbers shown in the table.
        notes: further remarks (e.g. what the learner's code printed).
        figure_data: data for :meth:`plot`, if the check recorded any.
        legend: one line per symbol or column of the table that needs explaining
            (e.g. ``{"α": "…"}``), shown after the table.
    """

    passed: bool
    verdict: str
    message: str
    scale: float | None = None
    diagnosis: str | None = None
    check: str = ""
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figure_data: dict[str, Any] | None = None
    legend: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def error(cls, message: str, *, check: str = "", diagnosis: str | None = None) -> Report:
        """A failed report for code that could not be checked (it raised, hung, ...)."""
        return cls(
            passed=False,
            verdict="error",
            message=message,
            check=check,
            diagnosis=None if diagnosis is None else str(diagnosis),
        )

    # ------------------------------------------------------------------ conversions
    def __bool__(self) -> bool:
        return bool(self.passed)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (no tensors, no subclasses)."""
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """Rebuild a report from :meth:`to_dict` output."""
        data = dict(data)
        data["rows"] = [Row(**r) for r in data.get("rows", [])]
        return cls(**data)

    # ------------------------------------------------------------------ text
    def __str__(self) -> str:
        head = "PASSED" if self.passed else "FAILED"
        lines = [f"{head} [{self.check or 'check'}] verdict: {self.verdict}"]
        if self.scale is not None:
            lines.append(f"scale α = {_fmt(self.scale)}")
        if self.diagnosis:
            lines.append(f"diagnosis: {self.diagnosis}")
        lines.append(self.message)
        for row in self.rows:
            lines.append(f"  {row.instance}:")
            for key, value in row.columns.items():
                lines.append(f"    {key:<28} {_fmt(value)}")
        lines.extend(f"  {key}: {text}" for key, text in self.legend.items())
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"Report(passed={self.passed}, verdict={self.verdict!r}, "
            f"scale={self.scale!r}, diagnosis={self.diagnosis!r})"
        )

    # ------------------------------------------------------------------ HTML
    def _repr_html_(self) -> str:
        """The report as HTML: verdict, message (maths typeset), a table and its legend."""
        colour = "#1a7f37" if self.passed else "#cf222e"
        head = "passed" if self.passed else "failed"
        parts = [
            '<div class="pgcheck-report" style="font-family:sans-serif;font-size:13px">',
            f'<div style="font-weight:bold;color:{colour}">{html.escape(head.upper())} '
            f"&mdash; {html.escape(self.check or 'check')}: "
            f"<code>{html.escape(self.verdict)}</code></div>",
            f'<p style="margin:4px 0">{math_html(self.message)}</p>',
        ]
        facts = []
        if self.scale is not None:
            facts.append(f"scale α = {_html_value(self.scale)}")
        if self.diagnosis:
            facts.append(f"diagnosis: <code>{html.escape(self.diagnosis)}</code>")
        if facts:
            parts.append(f'<p style="margin:4px 0">{" &middot; ".join(facts)}</p>')
        if self.rows:
            keys: list[str] = []
            for row in self.rows:
                keys.extend(k for k in row.columns if k not in keys)
            cell = 'style="padding:2px 8px;text-align:left;vertical-align:top"'
            parts.append(
                '<table class="pgcheck-table" style="border-collapse:collapse">'
                f"<thead><tr><th {cell}>instance</th>"
            )
            parts.extend(f"<th {cell}>{math_html(k)}</th>" for k in keys)
            parts.append("</tr></thead><tbody>")
            for row in self.rows:
                parts.append(f"<tr><td {cell}>{math_html(row.instance)}</td>")
                for k in keys:
                    value = row.columns.get(k, "")
                    parts.append(
                        f'<td style="font-family:monospace;padding:2px 8px;vertical-align:top">'
                        f"{_html_value(value, relative=_is_relative(k))}</td>"
                    )
                parts.append("</tr>")
            parts.append("</tbody></table>")
            legend = [(k, COLUMN_LEGEND[k]) for k in keys if k in COLUMN_LEGEND]
            if legend:
                parts.append('<ul class="pgcheck-legend" style="margin:4px 0;color:#57606a">')
                parts.extend(
                    f"<li><b>{math_html(k)}</b>: {math_html(text)}</li>" for k, text in legend
                )
                parts.append("</ul>")
        for key, text in self.legend.items():
            parts.append(
                f'<p style="margin:2px 0;color:#57606a"><b>{html.escape(key)}</b>: '
                f"{html.escape(text)}</p>"
            )
        for note in self.notes:
            parts.append(f'<p style="margin:2px 0;color:#57606a">note: {html.escape(note)}</p>')
        parts.append("</div>")
        return "".join(parts)

    # ------------------------------------------------------------------ picture
    def plot(self, ax: Any = None) -> Any:
        """Draw the check's picture (if it recorded one) and return the matplotlib figure."""
        from pgcheck.plot import plot_report  # matplotlib only when a picture is asked for

        return plot_report(self, ax=ax)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        shown = ", ".join(_fmt(v) for v in value[:6])
        more = f", … ({len(value)} entries)" if len(value) > 6 else ""
        return f"[{shown}{more}]"
    return str(value)


#: One line per table column: what the numbers in it are.
COLUMN_LEGEND: dict[str, str] = {
    "∇J (exact)": "the exact policy gradient of J(θ), by autograd of the exactly computed J",
    "∇J (finite differences)": "the same gradient by central finite differences of J(θ)",
    "E[−∇L] (your loss)": "your loss's gradient, negated and averaged exactly over trajectories",
    "α": "the scale in E[−∇L] = α ∇J + r (1 is right, −1 a flipped sign, 0 no signal)",
    "‖r‖/‖E[−∇L]‖": "the share of your expected gradient that is not along ∇J (0 when unbiased)",
    "‖E[−∇L] − ∇J‖/‖∇J‖": "the relative error of your expected gradient (about 1e-15 when right)",
    "batch": "how batches were formed: single trajectories, or every batch of B = 2",
    "yours": "what your function returned on this instance",
    "exact": "the exact value, computed by pgcheck",
    "autograd": "the same gradient by torch.autograd",
    "finite differences": "the same gradient by central finite differences",
    "max |diff|": "the largest absolute difference between yours and the reference",
    "|diff|": "the absolute difference between yours and the reference",
    "torch.distributions": "the log-probability torch.distributions computes",
    "Σ_a exp(yours)": "the sum of your probabilities over all actions (should be 1)",
    "∫ exp(yours) da": "the integral of your density over the action (should be 1)",
    "exact ∇E[f]": "the exact gradient of E[f(x)], computed by pgcheck",
    "E[your estimate]": "your estimator averaged exactly over the samples' distribution",
    "batch mean": "the mean of your estimates over the sampled batches",
    "standard error": "the standard error of that mean",
    "E[yours], batches of 2": "your estimator averaged exactly over every batch of two",
    "exact log p(τ)": "the exact log-probability of the trajectory",
    "exact (counts)": "the exact gradient, from counts of each state-action pair",
    "rewards": "the rewards of this instance",
    "states": "the states of this trajectory",
    "actions": "the actions of this trajectory",
    "lengths": "the episode lengths your code produced",
    "resets": "how many times your code reset the environment",
    "steps after the end": "steps taken after an episode had ended (should be 0)",
    "seeded resets": "resets that passed a seed (seed once, at the first reset)",
}

#: Magnitudes below this are float64 round-off of an exact zero and are shown as 0.
ZERO = 1e-12

_SCRIPT = re.compile(
    r"(?<![\w])([A-Za-zα-ωΑ-Ω])([_^])(\{[^{}]{1,12}\}|[A-Za-z0-9α-ω][′']?)(?![A-Za-z0-9_])"
)


def math_html(text: str) -> str:
    """Escape ``text`` and typeset its maths: ``x_t`` → x<sub>t</sub>, ``γ^t`` → γ<sup>t</sup>,
    ``x_{t+1}`` → x<sub>t+1</sub>; spans in backticks become ``<code>`` and stay verbatim."""
    pieces = str(text).split("`")
    out = []
    for index, piece in enumerate(pieces):
        escaped = html.escape(piece)
        if index % 2:  # inside backticks
            out.append(f"<code>{escaped}</code>")
            continue

        def script(match: re.Match[str]) -> str:
            base, kind, body = match.groups()
            body = body[1:-1] if body.startswith("{") else body
            tag = "sub" if kind == "_" else "sup"
            return f"{base}<{tag}>{body}</{tag}>"

        out.append(_SCRIPT.sub(script, escaped))
    if len(pieces) % 2 == 0:  # an unmatched backtick: keep it
        return html.escape(str(text))
    return "".join(out)


def _is_relative(key: str) -> bool:
    return "‖" in key or "diff" in key or key == "standard error"


def _html_number(value: float, *, relative: bool = False) -> str:
    """4 significant digits; a×10<sup>k</sup> instead of ``e``; never broken across lines;
    |x| < ZERO shown as 0 except in columns of errors (where 1e-16 says "exact")."""
    if math.isnan(value) or math.isinf(value):
        text = str(value)
    elif value == 0 or (abs(value) < ZERO and not relative):
        text = "0"
    else:
        text = f"{value:.4g}"
        if "e" in text:
            mantissa, exponent = text.split("e")
            power = str(int(exponent)).replace("-", "−")
            text = f"{mantissa}×10<sup>{power}</sup>"
        text = text.replace("-", "−") if text.startswith("-") else text
    return f'<span style="white-space:nowrap">{text}</span>'


def _html_value(value: Any, *, relative: bool = False) -> str:
    if isinstance(value, bool) or value is None:
        return html.escape(str(value))
    if isinstance(value, int | float):
        return _html_number(float(value), relative=relative)
    if isinstance(value, list | tuple):
        shown = ", ".join(_html_value(v, relative=relative) for v in value[:6])
        more = f", … ({len(value)} entries)" if len(value) > 6 else ""
        return f"[{shown}{more}]"
    return math_html(str(value))


def _plain(obj: Any) -> Any:
    """Convert to JSON-able builtins (floats, ints, strs, bools, lists, dicts, None)."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _plain(obj.tolist())
    return str(obj)
