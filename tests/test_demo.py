"""refplay.demo: the update rules as readable terminal text, within 100 columns."""

from __future__ import annotations

import unicodedata

import pytest

from refplay import demo, optim
from refplay.cli import main


def columns(line: str) -> int:
    """Terminal columns of ``line`` (wide East Asian characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line)


@pytest.mark.parametrize("rule", sorted(optim.RULES))
@pytest.mark.parametrize("lr", [0.1, 1e10, 1e300])
def test_demo_prints_no_latex_and_fits_100_columns(rule, lr, capsys):
    assert main(["demo", "--rule", rule, "--steps", "3", "--lr", str(lr)]) == 0
    out = capsys.readouterr().out
    for latex in ("\\", "&", "frac", "sqrt", "\\nabla", "\\theta"):
        assert latex not in out, (latex, out)
    assert max(columns(line) for line in out.splitlines()) <= 100, out
    assert f"refplay/optim.py: optim.{rule}" in out
    # one line per equation of the docstring's aligned block (NAdam's θ update is joined)
    assert len(demo.readable_equations(rule)) == sum("=" in eq for eq in demo.equations(rule)[1:])


@pytest.mark.parametrize("latex, text", [
    (r"\theta_{t+1} = \theta_t - \eta_t \nabla l(\theta_t)", "θ_{t+1} = θ_t - η_t ∇l(θ_t)"),
    (r"v_0 &= 1, \quad m_0 = 0", "v_0 = 1,   m_0 = 0"),
    (r"v_{t+1} &= \rho v_t + (1 - \rho) \nabla l(\theta_t)^2",
     "v_{t+1} = ρ v_t + (1 - ρ) ∇l(θ_t)²"),
    (r"m_{t+1} &= \gamma m_t + \frac{\eta_t}{\sqrt{v_{t+1} + \epsilon}} \nabla l(\theta_t)",
     "m_{t+1} = γ m_t + (η_t / √(v_{t+1} + ε)) ∇l(θ_t)"),
    (r"b_{t+1} &= \frac{\sqrt{1 - \beta_2^{t+1}}}{1 - \beta_1^{t+1}}",
     "b_{t+1} = √(1 - β_2^(t+1)) / (1 - β_1^(t+1))"),
    (r"\frac{a}{b} + \frac{c}{d}", "(a / b) + (c / d)"),
    (r"x = (a) + (b)", "x = (a) + (b)"),              # not one enclosing pair: kept
    (r"l(\theta) = \tfrac12 \theta^\top A \theta", "l(θ) = (1 / 2) θᵀ A θ"),
    (r"\operatorname{diag}(3, 0.5)", "diag(3, 0.5)"),
])
def test_to_text(latex, text):
    assert demo.to_text(latex) == text


def test_nadam_continuation_lines_become_one_equation():
    lines = demo.readable_equations("nadam")
    assert lines[-1] == ("θ_{t+1} = θ_t - α_t ((β_1 m_{t+1} + (1 - β_1) ∇l(θ_t)) / "
                         "(√v_{t+1} + ε)) b_{t+1}")


def test_a_command_without_a_plain_form_is_refused_by_name():
    with pytest.raises(ValueError, match=r"\\mathcal"):
        demo.to_text(r"\mathcal{L} = 0")
    with pytest.raises(ValueError, match="unclosed"):
        demo.to_text(r"\frac{a}{b")


def test_the_printed_steps_are_the_hand_computed_ones(capsys):
    """SGD on l(θ) = ½ θᵀ diag(3, 0.5) θ: θ_{t+1} = (θ¹(1 - 3η), θ²(1 - 0.5η))."""
    assert main(["demo", "--rule", "sgd", "--steps", "2", "--lr", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "θ_1 = [ 0.700000000000, -0.950000000000]" in out
    assert "θ_2 = [ 0.490000000000, -0.902500000000]" in out
    assert main(["demo", "--rule", "sgd", "--steps", "1", "--lr", "1e10"]) == 0
    out = capsys.readouterr().out
    first = (1 - 3e10, -1 + 0.5e10)
    assert f"θ_1 = [{first[0]: .12e}, {first[1]: .12e}]" in out
