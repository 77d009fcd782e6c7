"""One verdict everywhere: for every graded exercise of every notebook, the visible test
cell, the hidden test and pgcheck's instant feedback (the notebook's own feedback call)
agree on a bank of right and wrong answers, written as a learner would."""

from __future__ import annotations

import ast
import math
import sys
import textwrap
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import pgcheck
import pgcheck.grading
from pgcheck.grading.spec import nbgrader_meta, parse_source

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))

from course_tools import fresh_interpreter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "solutions").glob("*/*.ipynb"))

LOG_PI = """
def log_pi(logits, actions):
    return torch.log_softmax(logits, dim=-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
"""

#: function name -> (right answers, wrong answers), each the source of a definition
BANK: dict[str, tuple[list[str], list[str]]] = {
    "score_softmax_linear": (
        [
            """def score_softmax_linear(theta, features, action):
    probs = torch.softmax(features @ theta, dim=0)
    return features[action] - probs @ features""",
            # float32 arithmetic (issue 10: the old visible test raised on it)
            """def score_softmax_linear(theta, features, action):
    th, X = theta.float(), features.float()
    return (X[action] - torch.softmax(X @ th, 0) @ X).double()""",
        ],
        [
            """def score_softmax_linear(theta, features, action):
    probs = torch.softmax(features @ theta, dim=0)
    return probs @ features - features[action]""",
        ],
    ),
    "score_estimator_gaussian": (
        [
            """def score_estimator_gaussian(samples, theta, f):
    mu, sigma = theta[0], theta[1].exp()
    z = (samples - mu) / sigma
    return (f(samples)[:, None] * torch.stack([z / sigma, z**2 - 1], -1)).mean(0)""",
        ],
        [
            """def score_estimator_gaussian(samples, theta, f):
    mu, sigma = theta[0], theta[1].exp()
    z = (samples - mu) / sigma
    return (f(samples)[:, None] * torch.stack([z / sigma, z**2], -1)).mean(0)""",
        ],
    ),
    "log_pi": (
        [LOG_PI],
        [
            """def log_pi(logits, actions):
    return torch.softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)""",
        ],
    ),
    "log_prob_trajectory": (
        [
            """def log_prob_trajectory(states, actions, log_p0, log_pi, log_P):
    now, nxt = states[:-1], states[1:]
    return log_p0[states[0]] + log_pi[now, actions].sum() + log_P[now, actions, nxt].sum()""",
        ],
        [
            """def log_prob_trajectory(states, actions, log_p0, log_pi, log_P):
    now, nxt = states[:-1], states[1:]
    return log_pi[now, actions].sum() + log_P[now, actions, nxt].sum()""",
        ],
    ),
    "discounted_return": (
        [
            """def discounted_return(rewards, gamma):
    return sum(gamma**t * r for t, r in enumerate(rewards.tolist()))""",
        ],
        [
            """def discounted_return(rewards, gamma):
    return rewards.sum()"""
        ],
    ),
    "mc_gradient_loss": (
        [
            LOG_PI
            + """
def mc_gradient_loss(logits, actions, mask, returns):
    return -(returns * (log_pi(logits, actions) * mask).sum(dim=1)).mean()""",
        ],
        [
            LOG_PI
            + """
def mc_gradient_loss(logits, actions, mask, returns):
    return (returns * (log_pi(logits, actions) * mask).sum(dim=1)).mean()""",
            # issue 10: returns [B] broadcast against [B, T]
            LOG_PI
            + """
def mc_gradient_loss(logits, actions, mask, returns):
    return -(returns * (log_pi(logits, actions) * mask)).sum(1).mean()""",
        ],
    ),
    "pseudo_loss_tutorial": (
        [
            """def pseudo_loss_tutorial(log_probs, returns, mask):
    return -(returns.detach() * (log_probs * mask).sum(dim=1)).mean()""",
            # issue 10: no .detach() on returns computed from rewards cannot matter
            """def pseudo_loss_tutorial(log_probs, returns, mask):
    return -(returns * (log_probs * mask).sum(dim=1)).mean()""",
        ],
        [
            """def pseudo_loss_tutorial(log_probs, returns, mask):
    return -(returns * log_probs.sum(dim=1)).mean()""",
            """def pseudo_loss_tutorial(log_probs, returns, mask):
    return -(returns * (log_probs * mask)).sum(1).mean()""",
        ],
    ),
    "pseudo_loss_lecture": (
        [
            """def pseudo_loss_lecture(logits, actions, q_values, gamma):
    B, T, A = logits.shape
    nll = F.cross_entropy(logits.reshape(B * T, A), actions.reshape(B * T),
                          reduction="none").reshape(B, T)
    return (gamma ** torch.arange(T, dtype=q_values.dtype) * q_values * nll).sum(1).mean()""",
        ],
        [
            """def pseudo_loss_lecture(logits, actions, q_values, gamma):
    B, T, A = logits.shape
    nll = F.cross_entropy(logits.reshape(B * T, A), actions.reshape(B * T),
                          reduction="none").reshape(B, T)
    return (q_values * nll).sum(1).mean()""",
        ],
    ),
    "collect_episode": (
        [
            """def collect_episode(env, policy, rng):
    observations, actions, rewards = [], [], []
    obs, info = env.reset()
    while True:
        action = policy(obs, rng)
        next_obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs); actions.append(action); rewards.append(reward)
        obs = next_obs
        if terminated or truncated:
            break
    return np.array(observations), np.array(actions), np.array(rewards, dtype=np.float64)""",
        ],
        [
            """def collect_episode(env, policy, rng):
    observations, actions, rewards = [], [], []
    obs, info = env.reset()
    while True:
        action = policy(obs, rng)
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs); actions.append(action); rewards.append(reward)
        if terminated or truncated:
            break
    return np.array(observations), np.array(actions), np.array(rewards, dtype=np.float64)""",
        ],
    ),
    "pseudo_loss": (
        [
            """def pseudo_loss(logits, actions, returns, mask):
    lp = torch.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    return -(returns.detach().unsqueeze(1) * lp * mask).sum() / returns.shape[0]""",
        ],
        [
            # issue 10: .mean() over all B×T entries (biased with real padded batches)
            """def pseudo_loss(logits, actions, returns, mask):
    lp = torch.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    return -(returns.unsqueeze(1) * lp * mask).mean()""",
            """def pseudo_loss(logits, actions, returns, mask):
    lp = torch.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    return -(returns * (lp * mask)).sum(1).mean()""",
        ],
    ),
    "reward_to_go": (
        [
            """def reward_to_go(rewards, gamma):
    out, running = [], 0.0
    for r in reversed(rewards.tolist()):
        running = r + gamma * running
        out.append(running)
    return torch.tensor(out[::-1], dtype=rewards.dtype)""",
        ],
        [
            """def reward_to_go(rewards, gamma):
    out, running = [], 0.0
    for r in rewards.tolist():
        running = r + gamma * running
        out.append(running)
    return torch.tensor(out, dtype=rewards.dtype)""",
        ],
    ),
    "rtg_pseudo_loss": (
        [
            """def rtg_pseudo_loss(log_probs, q_values, gamma, mask):
    d = gamma ** torch.arange(q_values.shape[1], dtype=q_values.dtype)
    return -(d * q_values * log_probs * mask).sum() / q_values.shape[0]""",
        ],
        [
            """def rtg_pseudo_loss(log_probs, q_values, gamma, mask):
    return -(q_values * log_probs * mask).sum() / q_values.shape[0]""",
            """def rtg_pseudo_loss(log_probs, q_values, gamma, mask):
    d = gamma ** torch.arange(q_values.shape[1], dtype=q_values.dtype)
    return -(d * q_values * log_probs * mask).mean()""",
        ],
    ),
    "pseudo_loss_with_baseline": (
        [
            """def pseudo_loss_with_baseline(log_probs, q_values, values, mask):
    return -((q_values - values.detach()) * log_probs * mask).sum() / q_values.shape[0]""",
        ],
        [
            # forgetting the detach of a θ-dependent baseline is a real bug
            """def pseudo_loss_with_baseline(log_probs, q_values, values, mask):
    return -((q_values - values) * log_probs * mask).sum() / q_values.shape[0]""",
        ],
    ),
    "value_loss": (
        [
            """def value_loss(values, targets, mask):
    return ((values - targets.detach()) ** 2 * mask).sum() / mask.sum()""",
        ],
        [
            """def value_loss(values, targets, mask):
    return ((values - targets) ** 2).mean()"""
        ],
    ),
    # 07: Gaussian policies
    "gaussian_log_prob": (
        [
            """def gaussian_log_prob(mean, std, actions):
    z = (actions - mean) / std
    return -0.5 * z**2 - torch.log(std) - 0.5 * math.log(2 * math.pi)""",
            """def gaussian_log_prob(mean, std, actions):
    return torch.distributions.Normal(mean, std).log_prob(actions)""",
        ],
        [
            # the -log sigma term forgotten
            """def gaussian_log_prob(mean, std, actions):
    return -((actions - mean) ** 2) / (2 * std**2) - 0.5 * math.log(2 * math.pi)""",
        ],
    ),
    "gaussian_pseudo_loss": (
        [
            """def gaussian_pseudo_loss(mean, std, actions, q_values, gamma, mask):
    T = mask.shape[1]
    discount = torch.tensor([gamma**t for t in range(T)], dtype=torch.float64)
    log_pi = torch.distributions.Normal(mean, std).log_prob(actions)
    return -(discount * q_values * log_pi * mask).sum(dim=1).mean()""",
        ],
        [
            # gamma^t missing
            """def gaussian_pseudo_loss(mean, std, actions, q_values, gamma, mask):
    log_pi = torch.distributions.Normal(mean, std).log_prob(actions)
    return -(q_values * log_pi * mask).sum(dim=1).mean()""",
        ],
    ),
    "collect_episodes": (
        [
            """def collect_episodes(env, policy, n_episodes, rng):
    low, high = env.action_space.low, env.action_space.high
    episodes = []
    for _ in range(n_episodes):
        obs, _ = env.reset()
        O, A, R = [], [], []
        done = False
        while not done:
            a = np.asarray(policy.act(obs, rng), dtype=np.float64)
            nxt, r, terminated, truncated, _ = env.step(np.clip(a, low, high))
            O.append(obs); A.append(a); R.append(r)
            obs, done = nxt, terminated or truncated
        episodes.append((np.array(O), np.array(A), np.array(R)))
    T = max(len(r) for _, _, r in episodes)
    B, d, k = len(episodes), episodes[0][0].shape[1], episodes[0][1].shape[1]
    out = {"observations": torch.zeros(B, T, d, dtype=torch.float64),
           "actions": torch.zeros(B, T, k, dtype=torch.float64),
           "rewards": torch.zeros(B, T, dtype=torch.float64),
           "mask": torch.zeros(B, T, dtype=torch.float64)}
    for i, (O, A, R) in enumerate(episodes):
        n = len(R)
        out["observations"][i, :n] = torch.from_numpy(O)
        out["actions"][i, :n] = torch.from_numpy(A)
        out["rewards"][i, :n] = torch.from_numpy(R)
        out["mask"][i, :n] = 1.0
    return out""",
        ],
        [
            # the clipped action stored: log pi is then taken at an action never sampled
            """def collect_episodes(env, policy, n_episodes, rng):
    low, high = env.action_space.low, env.action_space.high
    episodes = []
    for _ in range(n_episodes):
        obs, _ = env.reset()
        O, A, R = [], [], []
        done = False
        while not done:
            a = np.clip(np.asarray(policy.act(obs, rng), dtype=np.float64), low, high)
            nxt, r, terminated, truncated, _ = env.step(a)
            O.append(obs); A.append(a); R.append(r)
            obs, done = nxt, terminated or truncated
        episodes.append((np.array(O), np.array(A), np.array(R)))
    T = max(len(r) for _, _, r in episodes)
    B, d, k = len(episodes), episodes[0][0].shape[1], episodes[0][1].shape[1]
    out = {"observations": torch.zeros(B, T, d, dtype=torch.float64),
           "actions": torch.zeros(B, T, k, dtype=torch.float64),
           "rewards": torch.zeros(B, T, dtype=torch.float64),
           "mask": torch.zeros(B, T, dtype=torch.float64)}
    for i, (O, A, R) in enumerate(episodes):
        n = len(R)
        out["observations"][i, :n] = torch.from_numpy(O)
        out["actions"][i, :n] = torch.from_numpy(A)
        out["rewards"][i, :n] = torch.from_numpy(R)
        out["mask"][i, :n] = 1.0
    return out""",
        ],
    ),
    # 08: the policy gradient theorem
    "q_values": (
        [
            """def q_values(P, R, pi, gamma):
    S = P.shape[0]
    P_pi = torch.einsum("sa,sap->sp", pi, P)
    V = torch.linalg.solve(torch.eye(S, dtype=P.dtype) - gamma * P_pi, (pi * R).sum(-1))
    return R + gamma * torch.einsum("sap,p->sa", P, V)""",
        ],
        [
            # V(s) where Q(s, a) belongs
            """def q_values(P, R, pi, gamma):
    S = P.shape[0]
    P_pi = torch.einsum("sa,sap->sp", pi, P)
    V = torch.linalg.solve(torch.eye(S, dtype=P.dtype) - gamma * P_pi, (pi * R).sum(-1))
    return V[:, None].expand_as(R)""",
        ],
    ),
    "visitation": (
        [
            """def visitation(p0, P, pi, gamma):
    P_pi = (pi[:, :, None] * P).sum(1)
    d, visits = torch.zeros_like(p0), p0.clone()
    for t in range(2000):  # sum_t gamma^t Pr(s_t = s); episodes end, so this converges
        d = d + visits
        visits = gamma * (P_pi.T @ visits)
    return d""",
        ],
        [
            # the undiscounted visitation, used with gamma < 1
            """def visitation(p0, P, pi, gamma):
    P_pi = torch.einsum("sa,sap->sp", pi, P)
    return torch.linalg.solve(torch.eye(P.shape[0], dtype=P.dtype) - P_pi.T, p0)""",
        ],
    ),
    "policy_gradient_theorem": (
        [
            """def policy_gradient_theorem(p0, P, R, pi, score, gamma):
    S = P.shape[0]
    P_pi = torch.einsum("sa,sap->sp", pi, P)
    eye = torch.eye(S, dtype=P.dtype)
    d = torch.linalg.solve(eye - gamma * P_pi.T, p0)
    V = torch.linalg.solve(eye - gamma * P_pi, (pi * R).sum(-1))
    Q = R + gamma * P @ V
    return torch.einsum("s,sa,sa,saf->f", d, pi, Q, score)""",
        ],
        [
            # the pi(a|s) weight missing
            """def policy_gradient_theorem(p0, P, R, pi, score, gamma):
    S = P.shape[0]
    P_pi = torch.einsum("sa,sap->sp", pi, P)
    eye = torch.eye(S, dtype=P.dtype)
    d = torch.linalg.solve(eye - gamma * P_pi.T, p0)
    V = torch.linalg.solve(eye - gamma * P_pi, (pi * R).sum(-1))
    Q = R + gamma * P @ V
    return torch.einsum("s,sa,saf->f", d, Q, score)""",
        ],
    ),
    # 09: actor-critic, GAE, PPO
    "td_target": (
        [
            """def td_target(rewards, next_values, terminated, truncated, gamma):
    return rewards + gamma * (1.0 - terminated) * next_values.detach()""",
        ],
        [
            # truncation treated as termination: no bootstrap at the time limit
            """def td_target(rewards, next_values, terminated, truncated, gamma):
    done = torch.clamp(terminated + truncated, max=1.0)
    return rewards + gamma * (1.0 - done) * next_values.detach()""",
        ],
    ),
    "gae": (
        [
            """def gae(rewards, values, next_values, terminated, dones, gamma, lam):
    deltas = rewards + gamma * (1.0 - terminated) * next_values.detach() - values.detach()
    out, running = [], torch.zeros_like(deltas[0])
    for t in reversed(range(deltas.shape[0])):
        running = deltas[t] + gamma * lam * (1.0 - dones[t]) * running
        out.append(running)
    return torch.stack(out[::-1])""",
        ],
        [
            # the done mask forgotten: advantages leak across episode boundaries
            """def gae(rewards, values, next_values, terminated, dones, gamma, lam):
    deltas = rewards + gamma * (1.0 - terminated) * next_values.detach() - values.detach()
    out, running = [], torch.zeros_like(deltas[0])
    for t in reversed(range(deltas.shape[0])):
        running = deltas[t] + gamma * lam * running
        out.append(running)
    return torch.stack(out[::-1])""",
        ],
    ),
    "ppo_loss": (
        [
            """def ppo_loss(log_probs, old_log_probs, advantages, clip):
    ratio = torch.exp(log_probs - old_log_probs.detach())
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    return -torch.minimum(ratio * advantages, clipped * advantages).mean()""",
        ],
        [
            # the clipping applied to the advantage instead of the ratio
            """def ppo_loss(log_probs, old_log_probs, advantages, clip):
    ratio = torch.exp(log_probs - old_log_probs.detach())
    clipped_adv = torch.clamp(advantages, 1.0 - clip, 1.0 + clip)
    return -torch.minimum(ratio * advantages, ratio * clipped_adv).mean()""",
        ],
    ),
}


def _exercises() -> list[tuple[Path, str, str, str]]:
    """(notebook, function, visible test source, feedback call source) per hidden test."""
    out = []
    for path in SOURCES:
        spec = parse_source(path)
        nb = nbformat.read(path, as_version=4)
        plain = [c.source for c in nb.cells if c.cell_type == "code" and not nbgrader_meta(c)]
        for hidden in spec.hidden:
            fn = hidden.function_name
            visible = [v for v in spec.visible if fn in v.functions]
            assert len(visible) == 1, f"{path.name}: {fn} has {len(visible)} visible tests"
            feedback = _feedback_call(plain, fn) or (
                f"pgcheck.check_{hidden.check}({fn}"
                + "".join(f", {k}={v!r}" for k, v in hidden.options.items())
                + ")"
            )  # an exercise without a feedback cell (04's collect_episode): pgcheck's front
            out.append((path, fn, visible[0].source, feedback))
    return out


def _feedback_call(cells: list[str], fn: str) -> str | None:
    """The source of the notebook's instant-feedback call pgcheck.check_X(fn, ...)."""
    for source in cells:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr.startswith("check_")
                and node.args
                and isinstance(node.args[0], ast.Name)
                and node.args[0].id == fn
            ):
                return ast.unparse(node)
    return None


EXERCISES = _exercises()


def test_every_graded_exercise_is_in_the_bank():
    assert {fn for _, fn, _, _ in EXERCISES} == set(BANK)
    # an exercise graded in two notebooks (02's and 04's discounted_return) counts twice
    assert len(EXERCISES) == len(BANK) + 1


def _hidden_call(hidden) -> str:
    """The hidden test's call, as nbgrader's kernel runs it."""
    return (
        f"pgcheck.grading.hidden_test({hidden.check!r}, {hidden.function_name!r}, "
        f"**{hidden.options!r})"
    )


def _judges(answer: str, fn: str, visible: str, feedback: str, hidden) -> tuple[bool, bool, bool]:
    import gymnasium as gym

    ns = {
        "torch": torch,
        "F": F,
        "np": np,
        "math": math,
        "gym": gym,
        "pgcheck": pgcheck,
        "DT": torch.float64,  # the notebooks' dtype constant
    }
    for other, (rights, _) in BANK.items():  # a visible cell may test two exercises (06)
        if other != fn and other in visible:
            exec(textwrap.dedent(rights[0]), ns)  # noqa: S102 - this file's own text
    exec(textwrap.dedent(answer), ns)  # noqa: S102 - the bank is this file's own text
    try:
        exec(visible, dict(ns))  # noqa: S102
        visible_ok = True
    except AssertionError:
        visible_ok = False
    try:
        exec(_hidden_call(hidden), dict(ns))  # noqa: S102
        hidden_ok = True
    except AssertionError:
        hidden_ok = False
    feedback_ok = bool(eval(feedback, dict(ns)).passed)  # noqa: S307
    return visible_ok, hidden_ok, feedback_ok


CASES = [
    pytest.param(path, fn, vis, fb, answer, right, id=f"{path.stem[:2]}-{fn}-{kind}{i}")
    for path, fn, vis, fb in EXERCISES
    for right, kind in ((True, "right"), (False, "wrong"))
    for i, answer in enumerate(BANK[fn][0 if right else 1])
]


@pytest.mark.parametrize(("path", "fn", "visible", "feedback", "answer", "right"), CASES)
def test_visible_hidden_and_feedback_agree(path, fn, visible, feedback, answer, right):
    hidden = next(h for h in parse_source(path).hidden if h.function_name == fn)
    got = _judges(answer, fn, visible, feedback, hidden)
    assert got == (right, right, right), (fn, got)


# ------------------------------------------------------------------ the jail's setup
#: what the jail has not: pgcheck (the answer key) and pgcourse (which imports pgcheck); stated
#: here rather than imported from the grader, so that the tests do not check it against itself
JAIL_LACKS = ("pgcheck", "pgcourse")

#: runs jail cells (JSON on stdin) where the packages named as arguments cannot be imported, as
#: in the jail, and prints the setup cells that failed on an import and the names that were defined
_JAIL_LIKE = """
import json, sys, types
class NotInTheJail:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in sys.argv[1:]:
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, NotInTheJail())
namespace = {"get_ipython": lambda: types.SimpleNamespace(run_line_magic=lambda *a: None)}
failed = []
for cell in json.load(sys.stdin):
    try:
        exec(compile(cell["source"], cell["label"], "exec"), namespace)
    except ModuleNotFoundError as exc:
        failed.append([cell["label"], str(exc)])
    except BaseException:
        pass
print(json.dumps({"failed": failed, "names": sorted(namespace)}))
"""


def _jail_setup(source: Path) -> list[dict[str, str]]:
    from pgcheck.grading.grader import jail_cells
    from pgcheck.grading.submission import student_cells

    answers, _ = student_cells(source.read_bytes())
    return jail_cells(parse_source(source), answers)


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_the_jail_setup_imports_nothing_the_jail_lacks(source: Path) -> None:
    """The instructor's setup cells run in the jail without their imports of pgcheck and
    pgcourse, so a setup cell goes on past them: every name it defines after such an import
    is there for an answer, in the jail as in the learner's kernel (one verdict)."""
    for cell in _jail_setup(source):
        for node in ast.parse(cell["source"]).body:
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            assert not any(m.split(".")[0] in JAIL_LACKS for m in modules), (cell["label"], modules)


def test_names_after_the_course_library_import_are_defined_in_the_jail() -> None:
    """08's first cell imports pgcourse and then sets SEED and DT; run as the jail runs it
    (neither package importable), the setup fails on no import and defines both."""
    import json

    source = ROOT / "solutions" / "08_policy_gradient_theorem" / "08_policy_gradient_theorem.ipynb"
    printed = fresh_interpreter(_JAIL_LIKE, *JAIL_LACKS, stdin=json.dumps(_jail_setup(source)))
    result = json.loads(printed.splitlines()[-1])
    assert result["failed"] == []
    assert {"SEED", "DT", "rng"} <= set(result["names"])


def test_a_name_the_jail_lacks_gets_a_hint_not_a_bare_name_error() -> None:
    """An answer that uses what the notebook imported from pgcourse or pgcheck fails in the
    jail (and its instant feedback, below); the reason says why and what to change."""
    from pgcheck.grading.grader import _Grading
    from pgcheck.grading.records import Options, Submission

    name = "06_baselines"
    spec = parse_source(ROOT / "solutions" / name / f"{name}.ipynb")
    student = Submission("learner", name, ROOT / "notebooks" / name / f"{name}.ipynb")
    grading = _Grading(student, spec, Options(sandbox=False), slot=0)
    assert grading.left_out["log_probs_of"] == "pgcourse"
    assert grading.left_out["random_mdp"] == "pgcheck.problems"
    hint = grading.explain("raised NameError: name 'log_probs_of' is not defined")
    assert "`log_probs_of` from pgcourse" in hint and "answer cell" in hint, hint
    other = "raised NameError: name 'undefined_thing' is not defined"
    assert grading.explain(other) == other
    # an answer cell that imports the course library itself: the reason names it
    grading.cell_errors = [
        {
            "label": "answer cell value_baseline",
            "error": "ModuleNotFoundError: No module named 'pgcourse'",
        }
    ]
    reason = grading.missing_reason("value_loss")
    assert reason.startswith("imports pgcourse in answer cell value_baseline"), reason


# ------------------------------------------------------------------ self-contained answers
#: 05's reward-to-go through the helper the notebook imports from pgcheck.problems: right
#: numbers, but the jail has no pgcheck
BORROWING_RTG = "def reward_to_go(rewards, gamma):\n    return discounted_cumsum(rewards, gamma)\n"
RTG_SOURCE = ROOT / "solutions" / "05_reward_to_go" / "05_reward_to_go.ipynb"


def test_borrowed_names_follow_the_calls_and_ignore_attributes() -> None:
    """What :func:`borrowed_names` reports: globals from pgcheck or pgcourse that a notebook
    function loads, also through the notebook functions, methods, partials, lambdas and
    closures it uses; never an attribute of the same name, never pgcheck's own functions."""
    import functools

    import pgcourse
    from pgcheck.checks.self_contained import borrowed_names
    from pgcheck.problems import discounted_cumsum

    ns: dict[str, object] = {
        "__name__": "__main__",
        "torch": torch,
        "pc": pgcourse,
        "discounted_cumsum": discounted_cumsum,
        "cumsum": discounted_cumsum,
    }
    code = """
        def helper(r, g):
            return discounted_cumsum(r, g)
        def via_helper(r, g):
            return helper(r, g)
        def via_module(env, policy, rng):
            return pc.collect_episode(env, policy, rng)
        def attribute_only(r, g):
            return torch.flip(r, [0]).cumsum(0)  # an attribute named like a borrowed global
        def in_a_lambda(r, g):
            return (lambda x: discounted_cumsum(x, g))(r)
        class Agent:
            def act(self, r, g):
                return helper(r, g)
        def closure():
            inner = helper
            def f(r, g):
                return inner(r, g)
            return f
    """
    exec(textwrap.dedent(code), ns)  # noqa: S102 - this file's own text
    theirs = [("discounted_cumsum", "pgcheck")]
    assert borrowed_names(ns["via_helper"]) == theirs
    assert borrowed_names(ns["in_a_lambda"]) == theirs
    assert borrowed_names(ns["Agent"]().act) == theirs  # type: ignore[operator]
    assert borrowed_names(functools.partial(ns["helper"], g=0.9)) == theirs  # type: ignore[arg-type]
    assert borrowed_names(ns["closure"]()) == theirs  # type: ignore[operator]
    assert borrowed_names(ns["via_module"]) == [("pc", "pgcourse")]
    assert borrowed_names(ns["attribute_only"]) == []
    assert borrowed_names(discounted_cumsum) == []


def test_an_answer_using_the_course_library_fails_its_feedback_as_it_fails_its_grade(
    tmp_path: Path,
) -> None:
    """05's reward_to_go written as ``discounted_cumsum(rewards, gamma)``, the helper 05
    imports from pgcheck: the numbers are right, but the grader's jail has no pgcheck. The
    instant feedback, the visible test and the hidden test in the learner's kernel fail as
    the trusted grade does, and each says which name to replace."""
    from pgcheck.grading.pool import grade_notebook

    ns: dict[str, object] = {"__name__": "__main__", "torch": torch, "pgcheck": pgcheck}
    exec("from pgcheck.problems import discounted_cumsum", ns)  # noqa: S102 - as 05's setup
    exec(BORROWING_RTG, ns)  # noqa: S102
    report = pgcheck.check_returns(ns["reward_to_go"], kind="reward_to_go")
    assert not report.passed and report.diagnosis == "not_self_contained", report
    assert "`discounted_cumsum` (from pgcheck)" in report.message
    assert "answer cell" in report.message
    nb = nbformat.read(RTG_SOURCE, as_version=4)
    cells = {nbgrader_meta(c).get("grade_id"): c for c in nb.cells}
    with pytest.raises(AssertionError, match="discounted_cumsum"):
        exec(cells["reward_to_go_visible"].source, dict(ns))  # noqa: S102
    hidden = next(h for h in parse_source(RTG_SOURCE).hidden if h.function_name == "reward_to_go")
    with pytest.raises(AssertionError):
        exec(_hidden_call(hidden), dict(ns))  # noqa: S102
    # the grade: the same answer in the notebook, graded by the trusted grader in its jail
    cells["reward_to_go"].source = BORROWING_RTG
    path = tmp_path / RTG_SOURCE.name
    nbformat.write(nb, path)
    grades = {g.grade_id: g for g in grade_notebook(RTG_SOURCE, path, jobs=1, timeout=30)}
    for grade_id in ("reward_to_go_visible", "reward_to_go_hidden"):
        assert grades[grade_id].score == 0, grades[grade_id]
    assert "`discounted_cumsum` from pgcheck" in grades["reward_to_go_hidden"].message
    assert grades["rtg_pseudo_loss_hidden"].score == grades["rtg_pseudo_loss_hidden"].points > 0
