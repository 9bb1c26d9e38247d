"""Golden files → code that does not import refplay → ``refplay oracle verify``; and
``refplay oracle check MODULE:FUNCTION``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from refplay.cli import main
from refplay.oracle import golden, verify

# A stand-alone implementation of the documented layout: only json and numpy. It
# reads every case of the manifest, runs its own Adam on the recorded gradients
# and writes YOURS/cases/<id>.json. FORM picks the ε placement it implements.
OUTSIDE_SCRIPT = textwrap.dedent('''
    import json, math, pathlib, sys
    import numpy as np

    golden, yours, form = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
    manifest = json.loads((golden / "manifest.json").read_text())
    (yours / "cases").mkdir(parents=True, exist_ok=True)

    def array(a):
        return np.asarray(a["data"], dtype=np.float64).reshape(a["shape"])

    for entry in manifest["cases"]:
        case = json.loads((golden / entry["json"]).read_text())
        dt = np.dtype(case["dtype"])
        hp, lr = case["hparams"], case["schedule"]["lr"]
        b1, b2, eps = hp["beta1"], hp["beta2"], hp["eps"]
        out = {}
        for leaf, p in case["params"].items():
            grads = array(case["grads"][leaf]).astype(dt)
            theta = array(p)[0].astype(dt)
            m, v, hist = np.zeros_like(theta), np.zeros_like(theta), [theta]
            for t in range(case["steps"]):
                g = grads[t]
                m = b1 * m + (1 - b1) * g
                v = b2 * v + (1 - b2) * g * g
                s = t + 1
                if form == "torch":
                    theta = theta - lr[t] * (m / (1 - b1**s)) / (np.sqrt(v / (1 - b2**s)) + eps)
                else:
                    theta = theta - (lr[t] * math.sqrt(1 - b2**s) / (1 - b1**s)) * (
                        m / (np.sqrt(v) + eps))
                hist.append(theta)
            h = np.stack(hist)
            out[leaf] = {"shape": list(h.shape), "data": [float(x) for x in h.ravel()]}
        result = {"format": "refplay-oracle-result", "format_version": 1, "id": case["id"],
                  "params": out, "implementation": "test script, numpy only"}
        (yours / "cases" / (case["id"] + ".json")).write_text(json.dumps(result))
''')


@pytest.fixture(scope="module")
def golden_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("golden")
    assert main(["oracle", "export", "--out", str(out), "--rule", "adam", "--hparams",
                 "beta2=0.95,eps=1e-2", "--steps", "30", "--dtype", "float64", "float32",
                 "--problems", "mlp", "least_squares", "--state"]) == 0
    return out


def _outside(golden_dir, yours, form):
    assert "refplay" not in OUTSIDE_SCRIPT.replace('"refplay-oracle-result"', "")
    script = yours.parent / f"{yours.name}_impl.py"
    script.write_text(OUTSIDE_SCRIPT)
    subprocess.run([sys.executable, "-I", str(script), str(golden_dir), str(yours), form],
                   check=True, cwd=yours.parent)


def test_export_one_rule_carries_equation_tolerance_and_state(golden_dir):
    manifest = golden.load_manifest(golden_dir)
    ids = sorted(e["id"] for e in manifest["cases"])
    assert ids == sorted(f"adam-{p}-beta2_0.95-eps_0.01-{d}"
                         for p in ("mlp", "least_squares") for d in ("float64", "float32"))
    case = golden.load_case(golden_dir / "cases" / "adam-mlp-beta2_0.95-eps_0.01-float32.json")
    assert case["hparams"]["beta2"] == 0.95 and case["form"] == "playbook"
    assert case["tolerance"] == 1e-4 and case["format_version"] == 2
    assert "sqrt(v_{t+1}) + eps" in case["equation"]["text"]
    assert r"\sqrt{v_{t+1}} + \epsilon" in case["equation"]["latex"]
    m, g = case["state"]["m"]["dense_1/w"], case["grads"]["dense_1/w"]
    assert m.shape == (31, 3, 4) and m.dtype == np.float32
    np.testing.assert_allclose(m[1], np.float32(0.1) * g[0], rtol=1e-6)


def test_verify_round_trips_an_implementation_that_does_not_import_refplay(golden_dir,
                                                                           tmp_path, capsys):
    yours = tmp_path / "yours"
    _outside(golden_dir, yours, "playbook")
    verdicts = verify.verify(golden_dir, yours)
    assert [v.status for v in verdicts] == ["agrees"] * 4
    assert all(v.comparison.max <= v.comparison.tol for v in verdicts)
    assert main(["oracle", "verify", str(golden_dir), str(yours)]) == 0
    out = capsys.readouterr().out
    assert "4/4 cases agree; 0 differ, 0 invalid, 0 missing" in out


def test_verify_diagnoses_the_torch_form_written_elsewhere(golden_dir, tmp_path, capsys):
    yours = tmp_path / "yours"
    _outside(golden_dir, yours, "torch")
    verdicts = {v.id: v for v in verify.verify(golden_dir, yours)}
    v = verdicts["adam-mlp-beta2_0.95-eps_0.01-float64"]
    assert v.status == "differs" and v.comparison.diagnosis.names == ["torch"]
    assert main(["oracle", "verify", str(golden_dir), str(yours)]) == 1
    out = capsys.readouterr().out
    assert "DIFFERS  adam-mlp-beta2_0.95-eps_0.01-float64" in out
    assert "It equals Adam with ε added after the bias correction — the torch/optax form" in out


def test_verify_reports_missing_invalid_and_state(golden_dir, tmp_path, capsys):
    yours = tmp_path / "yours"
    _outside(golden_dir, yours, "playbook")
    cases = yours / "cases"
    (cases / "adam-least_squares-beta2_0.95-eps_0.01-float32.json").unlink()
    bad = cases / "adam-least_squares-beta2_0.95-eps_0.01-float64.json"
    obj = json.loads(bad.read_text())
    obj["params"]["w"]["shape"] = [30, 5]
    bad.write_text(json.dumps(obj))
    # a wrong second moment, reported through the optional state
    case = golden.load_case(golden_dir / "cases" / "adam-mlp-beta2_0.95-eps_0.01-float64.json")
    path = cases / "adam-mlp-beta2_0.95-eps_0.01-float64.json"
    obj = json.loads(path.read_text())
    v = {k: a.copy() for k, a in case["state"]["v"].items()}
    v["dense_2/b"][3:] *= 1.01
    obj["state"] = {"v": {k: {"shape": list(a.shape), "data": a.ravel().tolist()}
                          for k, a in v.items()}}
    path.write_text(json.dumps(obj))
    status = {x.id: x for x in verify.verify(golden_dir, yours)}
    assert status["adam-least_squares-beta2_0.95-eps_0.01-float32"].status == "missing"
    invalid = status["adam-least_squares-beta2_0.95-eps_0.01-float64"]
    assert invalid.status == "invalid" and "params['w'] has shape [30, 5]" in invalid.note
    noted = status["adam-mlp-beta2_0.95-eps_0.01-float64"]
    assert noted.status == "agrees"
    assert "buffer 'v' departs first, after 3 updates on leaf 'dense_2/b'" in noted.note
    assert main(["oracle", "verify", str(golden_dir), str(yours)]) == 1
    assert "2/4 cases agree; 0 differ, 1 invalid, 1 missing" in capsys.readouterr().out


def test_verify_bad_directories_are_one_line_errors(golden_dir, tmp_path, capsys):
    assert main(["oracle", "verify", str(golden_dir), str(tmp_path / "nope")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["oracle", "verify", str(golden_dir), str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("refplay: error: ") for line in err)
    assert "has none of the 4 cases" in err[1]


def test_export_cli_bad_input_is_one_line(tmp_path, capsys):
    assert main(["oracle", "export", "--out", str(tmp_path), "--rule", "adam",
                 "--hparams", "beta2"]) == 2
    assert main(["oracle", "export", "--out", str(tmp_path), "--hparams", "eps=1"]) == 2
    assert main(["oracle", "export", "--out", str(tmp_path), "--rule", "adam",
                 "--hparams", "betas=0.9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("refplay: error: ") for line in err)
    assert "NAME=VALUE" in err[0] and "need --rule" in err[1] and "betas" in err[2]


def test_export_cli_rows_and_state(tmp_path, capsys):
    assert main(["oracle", "export", "--out", str(tmp_path), "--rows", "sgd", "adamw",
                 "--problems", "rosenbrock", "--dtype", "float64", "--steps", "12",
                 "--state"]) == 0
    assert "wrote 3 cases" in capsys.readouterr().out        # sgd + adamw at 2 ε
    ids = {e["id"]: e for e in golden.load_manifest(tmp_path)["cases"]}
    assert set(ids) == {"sgd-rosenbrock-float64", "adamw-rosenbrock-eps1e-08-float64",
                        "adamw-rosenbrock-eps0.01-float64"}
    case = golden.load_case(tmp_path / ids["adamw-rosenbrock-eps0.01-float64"]["json"])
    assert case["hparams"]["weight_decay_mode"] == "decoupled" and set(case["state"]) == {"m", "v"}
    assert "decoupled" in case["equation"]["text"]
    assert main(["oracle", "export", "--out", str(tmp_path), "--rows", "sgd", "--rule",
                 "sgd"]) == 2


# ----------------------------------------------------------- check MODULE:FUNCTION
USER_MODULE = textwrap.dedent('''
    import numpy as np

    def make_step(params0, hparams):
        """Textbook RMSProp as torch writes it: v_0 = 0, ε outside the root."""
        rho, eps = hparams["rho"], hparams["eps"]
        v = {k: np.zeros_like(p) for k, p in params0.items()}

        def step(params, grads, lr):
            out = {}
            for k, p in params.items():
                v[k] = rho * v[k] + (1 - rho) * grads[k] ** 2
                out[k] = p - lr * grads[k] / (np.sqrt(v[k]) + eps)
            return out
        return step
''')


def test_check_runs_a_users_step_factory(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_rmsprop.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "my_rmsprop", raising=False)
    code = main(["oracle", "check", "my_rmsprop:make_step", "--rule", "rmsprop",
                 "--hparams", "gamma=0,eps=1e-8", "--problems", "mlp", "ill_conditioned"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "yours · rmsprop: DIFFERS" in out and "0/2 problems agree" in out
    assert "the torch form" in out and "max|Δθ| mlp: " in out
    code = main(["oracle", "check", "my_rmsprop:make_step", "--rule", "rmsprop", "--form",
                 "torch", "--hparams", "gamma=0,eps=1e-8", "--problems", "mlp"])
    out = capsys.readouterr().out
    assert code == 0 and "yours · rmsprop: MATCHES" in out, out


def test_check_user_target_errors_are_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_rmsprop.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main(["oracle", "check", "my_rmsprop:make_step"]) == 2                # no --rule
    assert main(["oracle", "check", "my_rmsprop:nothing", "--rule", "sgd"]) == 2
    assert main(["oracle", "check", "no_such_module_x:f", "--rule", "sgd"]) == 2
    assert main(["oracle", "check", "torch", "--rule", "sgd"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("refplay: error: ") for line in err)
    assert "needs --rule" in err[0] and "no callable 'nothing'" in err[1]
    assert "cannot import 'no_such_module_x'" in err[2] and "MODULE:FUNCTION" in err[3]
