"""``refplay demo``: print one playbook update rule and its first steps.

A two-parameter quadratic :math:`l(\\theta) = \\tfrac12 \\theta^\\top A \\theta`
with :math:`A = \\operatorname{diag}(3, 0.5)`, :math:`\\theta_0 = (1, -1)` and a
fixed learning rate, so every number can be checked by hand. For SGD at
η = 0.1: :math:`\\theta_1 = (1 - 0.1 \\cdot 3,\\ -1 + 0.1 \\cdot 0.5) = (0.7, -0.95)`.
"""

from __future__ import annotations

import inspect

import numpy as np

from refplay import _validate

#: The demo problem: l(θ) = ½ θᵀ A θ, so ∇l(θ) = A θ.
A = np.diag([3.0, 0.5])
THETA0 = np.array([1.0, -1.0])


def run(rule: str = "adam", steps: int = 3, lr: float = 0.1) -> list[tuple[int, np.ndarray]]:
    """Run ``steps`` updates of ``rule`` (default hyperparameters) on the demo quadratic.

    Returns the pairs ``(t, θ_t)`` for ``t = 0 .. steps``, in float64.
    """
    from refplay import optim
    steps = _validate.integer("steps", steps, low=0)
    lr = _validate.real("lr", lr, low=0.0)
    opt = optim.get(rule)
    params = {"theta": THETA0.copy()}
    state = opt.init(params)
    out = [(0, params["theta"].copy())]
    for t in range(steps):
        grads = {"theta": A @ params["theta"]}              # ∇l(θ_t) = A θ_t
        params, state = opt.update(params, grads, state, lr)
        out.append((t + 1, params["theta"].copy()))
    return out


def equations(rule: str) -> list[str]:
    """The rule's title and equation lines, taken from its docstring in ``refplay.optim``."""
    from refplay import optim
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


def _main(args) -> int:
    from refplay import optim
    trajectory = run(args.rule, args.steps, args.lr)    # validates before printing
    title, *eqs = equations(args.rule)
    print(f"{title}  --  refplay/optim.py: optim.{args.rule}")
    for eq in eqs:
        print(f"    {eq}")
    print(f"hyperparameters {optim.get(args.rule).hparams}")
    print(f"on l(θ) = ½ θᵀ diag(3, 0.5) θ from θ_0 = (1, -1), constant η_t = {args.lr}:")
    for t, theta in trajectory:
        print(f"  θ_{t} = [{theta[0]: .12f}, {theta[1]: .12f}]")
    return 0


def register(sub) -> None:
    from refplay.optim import RULES
    p = sub.add_parser("demo", help="print a playbook update rule and its first steps")
    p.add_argument("--rule", choices=sorted(RULES), default="adam")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.1)
    p.set_defaults(func=_main)
