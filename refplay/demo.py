"""``refplay demo``: print the first steps of one playbook update rule.

A two-parameter quadratic :math:`l(\\theta) = \\tfrac12 \\theta^\\top A \\theta`
with a fixed learning rate, so every number can be checked by hand.
"""

from __future__ import annotations

import numpy as np


def run(rule: str = "adam", steps: int = 3, lr: float = 0.1) -> list[tuple[int, np.ndarray]]:
    """Run ``steps`` updates of ``rule`` on the demo quadratic; return ``(t, θ_t)`` pairs."""
    from refplay import optim
    a = np.array([[3.0, 0.0], [0.0, 0.5]])
    params = {"theta": np.array([1.0, -1.0])}
    opt = optim.get(rule)
    state = opt.init(params)
    out = [(0, params["theta"].copy())]
    for t in range(steps):
        grads = {"theta": a @ params["theta"]}
        params, state = opt.update(params, grads, state, lr)
        out.append((t + 1, params["theta"].copy()))
    return out


def _main(args) -> int:
    from refplay import optim
    opt = optim.get(args.rule)
    print(f"{args.rule} {opt.hparams} on l(θ) = ½ θᵀ diag(3, 0.5) θ, lr = {args.lr}")
    print((optim.RULES[args.rule].__doc__ or "").strip().splitlines()[0])
    for t, theta in run(args.rule, args.steps, args.lr):
        print(f"  θ_{t} = [{theta[0]: .12f}, {theta[1]: .12f}]")
    return 0


def register(sub) -> None:
    from refplay.optim import RULES
    p = sub.add_parser("demo", help="print the first steps of a playbook update rule")
    p.add_argument("--rule", choices=sorted(RULES), default="adam")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.1)
    p.set_defaults(func=_main)
