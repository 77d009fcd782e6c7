"""The result of a check: a verdict, a message in the course's notation, and the numbers.

A :class:`Report` is truthy when the check passed, prints as plain text, renders as an HTML
table in Jupyter, converts to plain JSON-able data (:meth:`Report.to_dict`) and back, and can
draw a picture when the check recorded one (:meth:`Report.plot`).
"""

from __future__ import annotations

import html
import math
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
        colour = "#1a7f37" if self.passed else "#cf222e"
        head = "passed" if self.passed else "failed"
        parts = [
            '<div style="font-family:sans-serif;font-size:13px">',
            f'<div style="font-weight:bold;color:{colour}">{html.escape(head.upper())} '
            f"&mdash; {html.escape(self.check or 'check')}: "
            f"<code>{html.escape(self.verdict)}</code></div>",
            f'<p style="margin:4px 0">{html.escape(self.message)}</p>',
        ]
        facts = []
        if self.scale is not None:
            facts.append(f"scale α = {html.escape(_fmt(self.scale))}")
        if self.diagnosis:
            facts.append(f"diagnosis: <code>{html.escape(self.diagnosis)}</code>")
        if facts:
            parts.append(f'<p style="margin:4px 0">{" &middot; ".join(facts)}</p>')
        if self.rows:
            keys: list[str] = []
            for row in self.rows:
                keys.extend(k for k in row.columns if k not in keys)
            parts.append('<table style="border-collapse:collapse"><tr><th>instance</th>')
            parts.extend(f"<th>{html.escape(k)}</th>" for k in keys)
            parts.append("</tr>")
            for row in self.rows:
                parts.append(f"<tr><td>{html.escape(row.instance)}</td>")
                for k in keys:
                    value = row.columns.get(k, "")
                    parts.append(
                        f'<td style="font-family:monospace;padding:2px 8px">'
                        f"{html.escape(_fmt(value))}</td>"
                    )
                parts.append("</tr>")
            parts.append("</table>")
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
