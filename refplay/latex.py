"""LaTeX as plain terminal text: ``\\frac{\\eta_t}{\\sqrt{v}}`` -> ``η_t / √v``.

The update rules' docstrings and the tutorials' prose write their equations in
LaTeX; ``refplay demo`` and a tutorial run as a lesson print them in a terminal,
where raw LaTeX would be noise. :func:`to_text` renders one equation
(Greek letters, ∇, √(…), fractions as (a / b), digit superscripts as ²,
other indices as β_1, _{t+1}, ^(t+1)); :func:`prose_to_text` renders every
``$...$`` span of a paragraph.
"""

from __future__ import annotations

import re

__all__ = ["to_text", "prose_to_text"]

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
        """True once every token is read."""
        return self.i >= len(self.tokens)

    def take(self):
        """The next token, consumed."""
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def skip_spaces(self) -> None:
        """Consume the spaces ahead."""
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
        """Render tokens up to ``closing`` (consumed), or to the end when it is None."""
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
        """Render the next token, with the arguments a command takes."""
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
        """A sub- (``_``) or superscript (``^``) of ``text``: ², _1, _{t+1}, ^(t+1)."""
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
    """``(a / b)`` -> ``a / b`` when one pair of parentheses encloses all of a fraction.

    A written tuple, ``(0.1, 0.2)``, keeps its parentheses.
    """
    if not (text.startswith("(") and text.endswith(")")) or " / " not in text or ", " in text:
        return text
    depth = 0
    for i, c in enumerate(text):
        depth += (c == "(") - (c == ")")
        if depth == 0 and i < len(text) - 1:
            return text                         # "(a) b (c)": the first pair closes early
    return text[1:-1]


_MATH = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$", re.DOTALL)


def prose_to_text(text: str) -> str:
    """``text`` with each ``$...$`` (or ``$$...$$``) equation rendered by :func:`to_text`.

    An equation :func:`to_text` cannot render is shown as its LaTeX without
    the dollars, so a lesson never fails on its prose.
    """
    def render(match: re.Match) -> str:
        latex = " ".join((match.group(1) or match.group(2)).split())
        try:
            return to_text(latex)
        except ValueError:
            return latex
    return _MATH.sub(render, text)
