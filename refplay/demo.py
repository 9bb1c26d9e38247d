"""``refplay demo``: print one playbook update rule and its first steps.

A two-parameter quadratic :math:`l(\\theta) = \\tfrac12 \\theta^\\top A \\theta`
with :math:`A = \\operatorname{diag}(3, 0.5)`, :math:`\\theta_0 = (1, -1)` and a
fixed learning rate, so every number can be checked by hand. For SGD at
η = 0.1: :math:`\\theta_1 = (1 - 0.1 \\cdot 3,\\ -1 + 0.1 \\cdot 0.5) = (0.7, -0.95)`.

The rule's equations come from its docstring in :mod:`refplay.optim` (one
home for each equation) and are printed as plain Unicode by :func:`to_text`:
``\\frac{\\eta_t}{\\sqrt{v_{t+1} + \\epsilon}}`` becomes ``η_t / √(v_{t+1} + ε)``.
Every line fits a 100-column terminal.
"""

from __future__ import annotations

import inspect
import re
import textwrap

import numpy as np

from refplay import _validate

#: Terminal width the demo's output fits in.
WIDTH = 100

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
    with np.errstate(over="ignore", invalid="ignore"):   # a too-large η diverges: show it
        for t in range(steps):
            grads = {"theta": A @ params["theta"]}          # ∇l(θ_t) = A θ_t
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


# ---------------------------------------------------------------- LaTeX -> terminal text
# The docstrings' LaTeX, as plain Unicode a terminal shows: Greek letters, ∇, √(…),
# fractions as (a / b), digit superscripts as ², other indices as β_1, _{t+1}, ^(t+1).
_QUAD = "\0"                                   # a wide space, kept through space collapsing
_SYMBOLS = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "eta": "η",
    "theta": "θ", "lambda": "λ", "mu": "μ", "rho": "ρ", "sigma": "σ", "tau": "τ",
    "nabla": "∇", "ell": "ℓ", "cdot": "·", "times": "×", "odot": "⊙", "sum": "Σ",
    "leftarrow": "←", "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥", "approx": "≈",
    "in": "∈", "infty": "∞", "top": "ᵀ", "quad": _QUAD, "qquad": _QUAD + _QUAD,
    ",": " ", ";": " ", "!": "", "|": "‖", "{": "{", "}": "}",
}
_TEXT_COMMANDS = ("operatorname", "mathrm", "text", "mathbf", "mathit")
_FRACTIONS = ("frac", "tfrac", "dfrac")
_SUP_DIGITS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
_TOKEN = re.compile(r"\\([A-Za-z]+|.)|(.)", re.DOTALL)


def _is_atom(text: str) -> bool:
    """True when ``text`` needs no parentheses: nothing outside brackets but a single term."""
    previous = None
    while previous != text:                   # drop bracketed parts, innermost first
        previous, text = text, re.sub(r"\{[^{}]*\}|\([^()]*\)", "", text)
    return not re.search(r"[\s+\-/·=,]", text)


def _wrap(text: str) -> str:
    return text if _is_atom(text) else f"({text})"


class _Reader:
    """A cursor over LaTeX tokens: ``("cmd", name)`` for ``\\name``, ``("chr", c)`` otherwise."""

    def __init__(self, latex: str) -> None:
        self.tokens = [("cmd", m.group(1)) if m.group(1) is not None else ("chr", m.group(2))
                       for m in _TOKEN.finditer(latex)]
        self.latex = latex
        self.i = 0

    def done(self) -> bool:
        return self.i >= len(self.tokens)

    def take(self):
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def skip_spaces(self) -> None:
        while not self.done() and self.tokens[self.i] == ("chr", " "):
            self.i += 1

    def argument(self) -> str:
        """The next ``{...}`` group, or the next single token, rendered."""
        self.skip_spaces()
        if self.done():
            raise ValueError(f"equation {self.latex!r} ends where an argument was expected")
        if self.tokens[self.i] == ("chr", "{"):
            self.i += 1
            return self.until("}")
        return self.one()

    def until(self, closing: str | None) -> str:
        out = []
        while not self.done():
            if closing is not None and self.tokens[self.i] == ("chr", closing):
                self.i += 1
                return "".join(out)
            out.append(self.one())
        if closing is not None:
            raise ValueError(f"equation {self.latex!r} has an unclosed {{")
        return "".join(out)

    def one(self) -> str:
        kind, value = self.take()
        if kind == "chr":
            if value == "{":
                return self.until("}")
            if value == "&":                   # alignment point of an aligned block
                return ""
            if value in "^_":
                return self.index(value, self.argument())
            return value
        if value in _FRACTIONS:
            numerator, denominator = self.argument(), self.argument()
            return f"({_wrap(numerator)} / {_wrap(denominator)})"
        if value == "sqrt":
            return "√" + _wrap(self.argument())
        if value in _TEXT_COMMANDS:
            return self.argument()
        if value in ("left", "right"):
            return ""                          # the delimiter that follows prints itself
        if value == "nabla":
            self.skip_spaces()                 # ∇l(θ), not ∇ l(θ)
        if value not in _SYMBOLS:
            raise ValueError(f"equation {self.latex!r}: no plain-text form for \\{value}")
        return _SYMBOLS[value]

    @staticmethod
    def index(kind: str, text: str) -> str:
        if kind == "^" and text.isdigit():
            return text.translate(_SUP_DIGITS)
        if kind == "^" and text == "ᵀ":
            return text
        if len(text) == 1:
            return kind + text
        return f"_{{{text}}}" if kind == "_" else f"^({text})"


def to_text(latex: str) -> str:
    """One LaTeX equation as plain Unicode text, e.g. ``\\beta_1 m_t`` -> ``β_1 m_t``.

    Covers the commands the update rules' docstrings use; any other command is
    refused (``ValueError``), so a new docstring cannot print raw LaTeX.
    """
    text = re.sub(" +", " ", _Reader(latex).until(None)).strip()
    text = re.sub(f" ?{_QUAD}+ ?", "   ", text)
    lhs, eq, rhs = text.partition(" = ")
    return lhs + eq + _strip_outer(rhs) if eq else text


def _strip_outer(text: str) -> str:
    """``(a / b)`` -> ``a / b`` when one pair of parentheses encloses all of ``text``."""
    if not (text.startswith("(") and text.endswith(")")):
        return text
    depth = 0
    for i, c in enumerate(text):
        depth += (c == "(") - (c == ")")
        if depth == 0 and i < len(text) - 1:
            return text                         # "(a) b (c)": the first pair closes early
    return text[1:-1]


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
    from refplay import optim
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
    from refplay.optim import RULES
    p = sub.add_parser("demo", help="print a playbook update rule and its first steps")
    p.add_argument("--rule", choices=sorted(RULES), default="adam")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.1)
    p.set_defaults(func=_main)
