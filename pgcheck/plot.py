"""Pictures for reports: J over the plane spanned by ∇J and the learner's expected gradient."""

from __future__ import annotations

from typing import Any

import torch

from pgcheck.problems import find


def plot_report(report: Any, ax: Any = None, *, extent: float = 1.0, n: int = 41) -> Any:
    """Contours of J(θ₀ + u e₁ + v e₂) with arrows for ∇J and E[−∇L].

    e₁ = ∇J/‖∇J‖ and e₂ is the part of E[−∇L] orthogonal to it (a fixed random direction when
    the two are parallel). Both arrows are drawn with the same scale.
    """
    import matplotlib.pyplot as plt

    data = report.figure_data
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.2, 4.4))
    else:
        fig = ax.figure
    if not data:
        ax.text(
            0.5,
            0.5,
            f"no picture for this report\n({report.verdict})",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
        return fig
    prob = find(data["problem"])
    gj = torch.tensor(data["grad_J"], dtype=torch.float64)
    g = torch.tensor(data["expected_grad"], dtype=torch.float64)
    e1 = gj / gj.norm()
    rest = g - (g @ e1) * e1
    if rest.norm() <= 1e-9 * max(float(g.norm()), 1e-300):
        rest = torch.randn(
            gj.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64
        )
        rest = rest - (rest @ e1) * e1
    e2 = rest / rest.norm()
    us = torch.linspace(-extent, extent, n, dtype=torch.float64)
    with torch.no_grad():
        grid = torch.stack(
            [torch.stack([prob.J(prob.theta0 + u * e1 + v * e2) for u in us]) for v in us]
        )
    cs = ax.contourf(us.numpy(), us.numpy(), grid.numpy(), levels=20, cmap="viridis")
    fig.colorbar(cs, ax=ax, label="J(θ)")
    longest = max(float(gj.norm()), float(g.norm()))
    k = 0.6 * extent / longest
    for vec, colour, label in ((gj, "white", "∇J (exact)"), (g, "#ff5a36", "E[−∇L] (your loss)")):
        ax.annotate(
            "",
            xy=(k * float(vec @ e1), k * float(vec @ e2)),
            xytext=(0, 0),
            arrowprops={"arrowstyle": "-|>", "color": colour, "lw": 2.2},
        )
        ax.plot([], [], color=colour, lw=2.2, label=label)
    ax.plot(0, 0, "o", color="white", ms=4)
    ax.set_xlabel("θ₀ + u·e₁  (e₁ along ∇J)")
    ax.set_ylabel("θ₀ + v·e₂  (e₂ ⊥ ∇J)")
    ax.set_title(f"{prob.name}: {report.verdict}")
    ax.legend(loc="lower left", fontsize=8, facecolor="#444444", labelcolor="white")
    return fig
