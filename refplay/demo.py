"""``refplay demo``: print one playbook update rule and its first steps.

A two-parameter quadratic :math:`l(\\theta) = \\tfrac12 \\theta^\\top A \\theta`
with :math:`A = \\operatorname{diag}(3, 0.5)`, :math:`\\theta_0 = (1, -1)` and a
fixed learning rate, so every number can be checked by hand. For SGD at
η = 0.1: :math:`\\theta_1 = (1 - 0.1 \\cdot 3,\\ -1 + 0.1 \\cdot 0.5) = (0.7, -0.95)`.

The rule's equations come from its docstring in :mod:`refplay.optim` (one
home for each equation) and are printed as plain Unicode by
:func:`refplay.latex.to_text`:
``\\frac{\\eta_t}{\\sqrt{v_{t+1} + \\epsilon}}`` becomes ``η_t / √(v_{t+1} + ε)``.
Every line fits a 100-column terminal.
"""

from __future__ import annotations

import inspect
import textwrap

import numpy as np

from refplay import _validate, optim
from refplay.latex import to_text

#: Terminal width the demo's output fits in.
WIDTH = 100

#: The demo problem: l(θ) = ½ θᵀ A θ, so ∇l(θ) = A θ.
A = np.diag([3.0, 0.5])
THETA0 = np.array([1.0, -1.0])


def run(rule: str = "adam", steps: int = 3, lr: float = 0.1) -> list[tuple[int, np.ndarray]]:
    """Run ``steps`` updates of ``rule`` (default hyperparameters) on the demo quadratic.

    Returns the pairs ``(t, θ_t)`` for ``t = 0 .. steps``, in float64.
    """
    steps = _validate.integer("steps", steps, low=0)
    lr = _validate.real("lr", lr, low=0.0)
    opt = optim.get(rule)
    params = {"theta": THETA0.copy()}
    state = opt.init(params)
    out = [(0, params["theta"].copy())]
    with np.errstate(over="ignore", invalid="ignore"):   # a too-large η diverges: show it
        for t in range(steps):
            grads = {"theta": A @ params["theta"]}          # ∇l(θ_t) = A θ_t
            params, state = opt.update(params, grads, state, lr)
            out.append((t + 1, params["theta"].copy()))
    return out


def equations(rule: str) -> list[str]:
    """The rule's title and equation lines, taken from its docstring in ``refplay.optim``."""
    _validate.one_of("rule", rule, optim.RULES)
    lines = inspect.cleandoc(optim.RULES[rule].__doc__ or "").splitlines()
    title, eqs, in_math = lines[0], [], False
    for line in lines[1:]:
        if line.strip().startswith(".. math::"):
            in_math = True
            first = line.split("::", 1)[1].strip()     # one-line form ".. math:: x = y"
            if first:
                eqs.append(first)
        elif in_math and line.startswith(" "):
            eqs.append(line.strip().rstrip("\\").strip())
        elif in_math and line.strip():
            break                                        # the prose after the equations
    return [title, *eqs]


def readable_equations(rule: str) -> list[str]:
    """The rule's equations as terminal text, one line per equation.

    In an aligned block (lines with ``&``) a line without ``&`` continues the
    equation above it, as NAdam's long θ update does.
    """
    _, *eqs = equations(rule)
    aligned = any("&" in eq for eq in eqs)
    joined: list[str] = []
    for eq in eqs:
        if aligned and joined and "&" not in eq:
            joined[-1] += " " + eq
        else:
            joined.append(eq)
    return [to_text(eq) for eq in joined]


def _fit(text: str, indent: str) -> list[str]:
    """``text`` wrapped to :data:`WIDTH` columns, continuation lines indented a little more."""
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent + "    ",
                         break_on_hyphens=False)


def format_demo(rule: str, steps: int = 3, lr: float = 0.1) -> str:
    """The text ``refplay demo`` prints: title, equations, hyperparameters, the first steps."""
    trajectory = run(rule, steps, lr)                   # validates before anything is printed
    title = equations(rule)[0].rstrip(".")
    hparams = ", ".join(f"{k}={v!r}" for k, v in optim.get(rule).hparams.items())
    lines = [*_fit(title, ""), f"  code: refplay/optim.py: optim.{rule}"]
    lines += ["    " + eq for eq in readable_equations(rule)]
    if any("α" in eq for eq in readable_equations(rule)):
        lines.append("  (α_t is the learning rate η_t)")
    lines += _fit(f"hyperparameters: {hparams}", "  ")
    lines.append(f"on l(θ) = ½ θᵀ diag(3, 0.5) θ from θ_0 = (1, -1), constant η_t = {lr}:")
    lines += [f"  θ_{t} = [{_number(theta[0])}, {_number(theta[1])}]" for t, theta in trajectory]
    return "\n".join(lines)


def _number(x: float) -> str:
    """12 decimals, checkable by hand; exponent form once that would not fit a line."""
    return f"{x: .12f}" if abs(x) < 1e6 or not np.isfinite(x) else f"{x: .12e}"


def _main(args) -> int:
    print(format_demo(args.rule, args.steps, args.lr))
    return 0


def register(sub) -> None:
    """Add ``refplay demo`` to the ``refplay`` subparsers ``sub``."""
    p = sub.add_parser(
        "demo", help="print a playbook update rule and its first steps",
        description="Print one of the playbook's update rules (its equations, from "
                    "refplay.optim) and its first steps on a two-parameter quadratic, "
                    "l(θ) = ½ θᵀ diag(3, 0.5) "
                    "θ from θ_0 = (1, -1), so every number can be checked by hand.")
    p.add_argument("--rule", choices=sorted(optim.RULES), default="adam",
                   help="the update rule to show (default: adam)")
    p.add_argument("--steps", type=int, default=3,
                   help="how many updates to print after θ_0 (default: 3)")
    p.add_argument("--lr", type=float, default=0.1,
                   help="the constant learning rate η_t of every step (default: 0.1)")
    p.set_defaults(func=_main)
