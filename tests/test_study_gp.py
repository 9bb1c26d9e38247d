"""Adaptive studies (sampler "gp_ei" / "external"): proposals recorded before trials run,
rounds fixed by the batch size, serial == process pool bitwise, kill-and-resume equals an
uninterrupted run, an external optimizer drives a study, and spec-time refusals."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from refplay import rng, search, study
from refplay.study import Store, StudySpec
from refplay.study.runner import GpEiProposer, HistoryEntry
from refplay.study.synthetic import LinearRegressionTrial
from tests.test_study_resume import launch_driver, recorded, wait_until

REPO = Path(__file__).resolve().parents[1]
FAST = LinearRegressionTrial(max_train_steps=60, eval_every=10)


def nesterov_space() -> search.SearchSpace:
    # Nesterov on the synthetic least squares diverges above lr ~ 1: an infeasible region.
    return search.SearchSpace({
        "optimizer": search.Fixed("nesterov"),
        "lr": search.Float(1e-3, 5.0, scale="log"),
        "gamma": search.Float(0.8, 0.99),
    })


def gp_spec(name="gp", num_trials=12, initial_trials=5, batch=2, **overrides) -> StudySpec:
    kwargs = dict(name=name, workload=None, search_space=nesterov_space(),
                  num_trials=num_trials, max_train_steps=FAST.max_train_steps,
                  eval_every=FAST.eval_every, metric="validation/loss", sampler="gp_ei",
                  initial_trials=initial_trials, batch=batch)
    kwargs.update(overrides)
    return StudySpec(**kwargs)


def proposal_rows(store: Store, name: str) -> list[tuple]:
    """The proposals without their time stamps."""
    return [(p.trial, p.config_index, p.config, p.proposer, p.seed, p.history_size)
            for p in store.proposals(name)]


@pytest.fixture(scope="module")
def serial_gp(tmp_path_factory):
    """One uninterrupted serial run of gp_spec(), the reference of the tests below."""
    ws = tmp_path_factory.mktemp("serial_gp")
    spec = gp_spec()
    status = study.run(spec, store=ws, trial_fn=FAST, workers=0, progress=False)
    with Store(ws, readonly=True) as store:
        return spec, ws, status, store.records(spec.name), proposal_rows(store, spec.name)


# ------------------------------------------------------------------ the rounds
def test_proposal_rounds_follow_initial_trials_and_batch():
    assert gp_spec(num_trials=12, initial_trials=5, batch=2).proposal_rounds() == [
        range(0, 5), range(5, 7), range(7, 9), range(9, 11), range(11, 12)]
    assert gp_spec(num_trials=6, initial_trials=2, batch=1).proposal_rounds() == [
        range(0, 2), range(2, 3), range(3, 4), range(4, 5), range(5, 6)]
    external = gp_spec(sampler="external", initial_trials=0, batch=4, num_trials=10)
    assert external.proposal_rounds() == [range(0, 4), range(4, 8), range(8, 10)]


def test_only_the_initial_configs_are_known_before_the_study_runs():
    spec = gp_spec()
    assert spec.sampled_configs == search.halton(spec.search_space, 5, spec.sampler_seed)
    assert spec.trial(4).config == spec.sampled_configs[4]
    with pytest.raises(ValueError, match="no configuration until it is proposed"):
        spec.trial(5)
    with pytest.raises(ValueError, match="proposes its configurations"):
        spec.trials()
    proposed = {"optimizer": "nesterov", "lr": 0.1, "gamma": 0.9}
    assert spec.trial(7, config=proposed).config == proposed
    assert spec.trial(7, config=proposed).seed == study.trial_seed(spec.seed, 7)
    with pytest.raises(ValueError, match="only for an adaptive sampler"):
        gp_spec(sampler="halton", initial_trials=None, batch=None).trial(0, config=proposed)


# ---------------------------------------------------------- what gets recorded
def test_proposals_hold_exactly_the_configs_the_trials_ran(serial_gp):
    spec, ws, status, records, proposals = serial_gp
    assert status.done == spec.budget == 12
    assert [r["trial"] for r in records] == [p[0] for p in proposals] == list(range(12))
    assert [r["config"] for r in records] == [p[2] for p in proposals]
    # The initial trials are the spec's Halton configurations; then one gp_ei round per batch.
    assert [p[2] for p in proposals[:5]] == spec.sampled_configs
    assert {p[3] for p in proposals[:5]} == {"halton"}
    assert {p[3] for p in proposals[5:]} == {"gp_ei"}
    # Each round saw every trial before it (none failed) and got the seed of its first index.
    for p in proposals[5:]:
        start = spec.proposal_rounds()[[p[1] in r for r in spec.proposal_rounds()].index(True)]
        assert p[5] == start.start
        assert p[4] == rng.seed_int(rng.child(spec.sampler_seed, start.start))
    # The study found the infeasible region, and the trials ran other configs than Halton's.
    statuses = {r["status"].value for r in records}
    assert statuses == {"complete", "infeasible"}
    assert [r["config"] for r in records[5:]] != search.halton(spec.search_space, 12, 0)[5:]


def test_each_round_is_what_gp_ei_proposes_from_the_recorded_history(serial_gp):
    spec, _, _, records, proposals = serial_gp
    for rnd in spec.proposal_rounds()[1:]:
        history = [(r["config"], r["objective"], r["status"].value == "complete")
                   for r in records[:rnd.start]]
        # Infeasible trials enter the history with objective None (records store NaN as None).
        assert all(obj is None for _, obj, ok in history if not ok)
        seed = rng.seed_int(rng.child(spec.sampler_seed, rnd.start))
        again = search.gp_ei(spec.search_space, history, n=len(rnd), seed=seed)
        assert again == [proposals[c][2] for c in rnd]


def test_process_pool_records_equal_serial(serial_gp, tmp_path):
    spec, _, _, records, proposals = serial_gp
    paced = dataclasses.replace(FAST, sleep_seconds=0.02)   # the same computation, slower
    study.run(spec, store=tmp_path, trial_fn=paced, workers=2, progress=False)
    with Store(tmp_path, readonly=True) as store:
        assert store.records(spec.name) == records
        assert proposal_rows(store, spec.name) == proposals
        assert len({t.worker for t in store.trials(spec.name)}) == 2


def test_three_workers_give_the_same_study_because_batch_decides_the_rounds(serial_gp, tmp_path):
    spec, _, _, records, proposals = serial_gp
    study.run(spec, store=tmp_path, trial_fn=FAST, workers=3, progress=False)
    with Store(tmp_path, readonly=True) as store:
        assert store.records(spec.name) == records
        assert proposal_rows(store, spec.name) == proposals


# ---------------------------------------------------------------- kill and resume
class Killed(BaseException):
    """Stands for SIGKILL inside the driver: nothing after it runs."""


class KilledStore(Store):
    """A store whose driver dies after ``kill_after`` trial records (or proposal rounds)."""

    def __init__(self, workspace, *, kill_after: int, at: str = "record_trial") -> None:
        super().__init__(workspace)
        self.kill_after, self.at, self.calls = kill_after, at, 0

    def _count(self) -> None:
        self.calls += 1
        if self.calls > self.kill_after:
            raise Killed()

    def record_trial(self, *args, **kwargs):
        if self.at == "record_trial":
            self._count()
        return super().record_trial(*args, **kwargs)

    def record_proposals(self, *args, **kwargs):
        if self.at == "record_proposals":
            self._count()
        return super().record_proposals(*args, **kwargs)


@pytest.mark.parametrize("workers, at, kill_after", [
    (0, "record_trial", 3),        # inside the initial Halton trials
    (0, "record_trial", 5),        # right after the last initial trial: round 1 not proposed
    (0, "record_trial", 6),        # half-way through round [5, 7): its proposal is recorded
    (0, "record_proposals", 2),    # killed while proposing round [7, 9)
    (2, "record_trial", 8),        # a process pool killed with a trial in flight
])
def test_kill_and_resume_equals_an_uninterrupted_run(serial_gp, tmp_path, workers, at,
                                                     kill_after):
    spec, _, _, records, proposals = serial_gp
    killed = KilledStore(tmp_path, kill_after=kill_after, at=at)
    with pytest.raises(Killed):
        study.run(spec, store=killed, trial_fn=FAST, workers=workers, progress=False)
    killed.close()
    with Store(tmp_path, readonly=True) as store:
        before = store.proposals(spec.name)
        assert len(store.records(spec.name)) < spec.budget
    study.run(spec, store=tmp_path, trial_fn=FAST, workers=workers, progress=False)
    with Store(tmp_path, readonly=True) as store:
        assert store.records(spec.name) == records
        assert proposal_rows(store, spec.name) == proposals
        # The proposals recorded before the kill are kept as they were (time stamps too).
        assert store.proposals(spec.name)[:len(before)] == before


@pytest.mark.slow
def test_sigkilled_driver_and_workers_then_resume_equals_an_uninterrupted_run(serial_gp, tmp_path):
    """The real thing: the whole process group (driver and pool) SIGKILLed mid-study, twice."""
    spec, _, _, records, proposals = serial_gp
    spec_path = tmp_path / "gp.json"
    spec_path.write_text(spec.to_json())
    trial_kwargs = {"max_train_steps": FAST.max_train_steps, "eval_every": FAST.eval_every,
                    "sleep_seconds": 0.1}
    ws = tmp_path / "ws"
    draw = np.random.default_rng(7)
    for target in (3, 7):          # once in the Halton trials, once in the GP rounds
        proc = launch_driver(spec_path, ws, trial_kwargs, workers=2)
        wait_until(lambda: recorded(ws) >= target, proc)
        time.sleep(draw.uniform(0.0, 0.15))      # somewhere in the next trials
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        assert recorded(ws) < spec.budget
    proc = launch_driver(spec_path, ws, trial_kwargs, workers=2)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    with Store(ws, readonly=True) as store:
        assert store.records(spec.name) == records
        assert proposal_rows(store, spec.name) == proposals


@dataclasses.dataclass
class CountingProposer:
    """An external optimizer: log-uniform lr around the best trial, from a seeded generator."""

    space: search.SearchSpace
    calls: list = dataclasses.field(default_factory=list)

    def __call__(self, history, n, seed):
        self.calls.append((list(history), n, seed))
        feasible = [e for e in history if e.feasible]
        gen = rng.generator(seed)
        if not feasible:
            return search.halton(self.space, n, seed)
        best = min(feasible, key=lambda e: e.objective).config
        out = []
        for _ in range(n):
            lr = min(5.0, max(1e-3, best["lr"] * math.exp(gen.normal(0.0, 0.5))))
            out.append({**best, "lr": lr})
        return out


def test_a_recorded_proposal_is_replayed_on_resume_never_proposed_again(tmp_path):
    spec = gp_spec(name="ext", sampler="external", initial_trials=3, batch=2, num_trials=9)
    reference = CountingProposer(spec.search_space)
    study.run(spec, store=tmp_path / "ref", trial_fn=FAST, workers=0, progress=False,
              proposer=reference)
    assert [n for _, n, _ in reference.calls] == [2, 2, 2]

    first = CountingProposer(spec.search_space)
    killed = KilledStore(tmp_path / "ws", kill_after=4)    # round [3, 5) proposed, trial 4 not run
    with pytest.raises(Killed):
        study.run(spec, store=killed, trial_fn=FAST, workers=0, progress=False, proposer=first)
    killed.close()
    assert len(first.calls) == 1
    second = CountingProposer(spec.search_space)
    study.run(spec, store=tmp_path / "ws", trial_fn=FAST, workers=0, progress=False,
              proposer=second)
    assert [len(h) for h, _, _ in second.calls] == [5, 7]   # rounds [5, 7) and [7, 9) only
    with Store(tmp_path / "ref", readonly=True) as a, Store(tmp_path / "ws", readonly=True) as b:
        assert a.records("ext") == b.records("ext")
        assert proposal_rows(a, "ext") == proposal_rows(b, "ext")


# ------------------------------------------------------------- external proposers
def failing_at_high_gamma(config, seed, *, trial_dir):
    """Trials with gamma > 0.95 crash (failed); the others run (lr > ~1 diverges: infeasible)."""
    if config["gamma"] > 0.95:
        raise RuntimeError("planted crash")
    return FAST(config, seed, trial_dir=trial_dir)


def test_an_external_proposer_drives_a_study_and_sees_the_history_it_should(tmp_path):
    spec = gp_spec(name="ext", sampler="external", initial_trials=6, batch=3, num_trials=12,
                   mode="max")
    proposer = CountingProposer(spec.search_space)
    status = study.run(spec, store=tmp_path, trial_fn=failing_at_high_gamma, workers=0,
                       progress=False, proposer=proposer)
    assert status.done == 12
    with Store(tmp_path, readonly=True) as store:
        records = {t.trial: t for t in store.trials("ext")}
        proposals = store.proposals("ext")
    assert [p.config for p in proposals] == [records[i].config for i in range(12)]
    assert {p.proposer for p in proposals[6:]} == {"tests.test_study_gp.CountingProposer"}
    assert [(n, seed) for _, n, seed in proposer.calls] == [
        (3, rng.seed_int(rng.child(spec.sampler_seed, 6))),
        (3, rng.seed_int(rng.child(spec.sampler_seed, 9)))]
    statuses = {t.status.value for t in records.values()}
    assert statuses == {"complete", "infeasible", "failed"}   # the planted mix happened
    for history, _, _ in proposer.calls:
        start = 6 if len(proposer.calls[0][0]) == len(history) else 9
        expected = [i for i in range(start) if records[i].status.value != "failed"]
        assert [e.trial for e in history] == expected         # failed trials left out
        for e in history:
            assert isinstance(e, HistoryEntry)
            record = records[e.trial]
            assert e.config == record.config
            if record.status.value == "infeasible":
                assert (e.objective, e.feasible) == (None, False)
            else:   # mode="max": negated, so that lower is better for every proposer
                assert (e.objective, e.feasible) == (-record.objective, True)


def test_a_bad_proposal_is_refused_before_it_is_recorded(tmp_path):
    spec = gp_spec(name="ext", sampler="external", initial_trials=2, batch=1, num_trials=4)

    def outside(history, n, seed):
        return [{"optimizer": "nesterov", "lr": 50.0, "gamma": 0.9}] * n

    with pytest.raises(ValueError, match=r"proposer .*outside.* proposed an invalid config.*lr"):
        study.run(spec, store=tmp_path, trial_fn=FAST, workers=0, progress=False,
                  proposer=outside)

    def too_few(history, n, seed):
        return []

    with pytest.raises(ValueError, match="must return a list of 1 configs"):
        study.run(spec, store=tmp_path, trial_fn=FAST, workers=0, progress=False,
                  proposer=too_few)

    def crashing(history, n, seed):
        raise ZeroDivisionError("optimizer bug")

    with pytest.raises(study.StudyError, match="failed: ZeroDivisionError: optimizer bug"):
        study.run(spec, store=tmp_path, trial_fn=FAST, workers=0, progress=False,
                  proposer=crashing)
    with Store(tmp_path, readonly=True) as store:
        assert [p.trial for p in store.proposals("ext")] == [0, 1]   # only the Halton round
        assert store.status("ext").done == 2


def test_the_proposer_argument_goes_with_sampler_external_only(tmp_path):
    with pytest.raises(ValueError, match="sampler='external'; pass proposer=fn"):
        study.run(gp_spec(sampler="external", initial_trials=0), store=tmp_path, trial_fn=FAST)
    with pytest.raises(ValueError, match="gp_ei has its own proposer"):
        study.run(gp_spec(), store=tmp_path, trial_fn=FAST, proposer=lambda h, n, s: [])
    with pytest.raises(TypeError, match="proposer must be callable"):
        study.run(gp_spec(sampler="external", initial_trials=0), store=tmp_path, trial_fn=FAST,
                  proposer="optuna")
    assert not (tmp_path / study.DB_NAME).exists()   # refused before anything was written


def test_gp_ei_continues_quasi_random_search_until_two_trials_are_feasible():
    space = nesterov_space()
    proposer = GpEiProposer(space)
    one = [HistoryEntry(0, search.halton(space, 1, 0)[0], 0.5, True),
           HistoryEntry(1, search.halton(space, 2, 0)[1], None, False)]
    assert proposer.name_for(one) == GpEiProposer.NOT_ENOUGH_FEASIBLE
    assert proposer(one, 3, 7) == search.halton(space, 3, 7)
    two = [*one, HistoryEntry(2, search.halton(space, 3, 0)[2], 0.25, True)]
    assert proposer.name_for(two) == "gp_ei"
    triples = [(e.config, e.objective, e.feasible) for e in two]
    assert proposer(two, 2, 7) == search.gp_ei(space, triples, n=2, seed=7)


def test_repeats_run_each_proposed_config_with_every_seed(tmp_path):
    spec = gp_spec(name="rep", num_trials=5, initial_trials=3, batch=1, repeats=2)
    status = study.run(spec, store=tmp_path, trial_fn=FAST, workers=0, progress=False)
    assert status.done == 10
    with Store(tmp_path, readonly=True) as store:
        proposals = store.proposals("rep")
        trials = store.trials("rep")
    assert [p.trial for p in proposals] == list(range(10))
    assert [p.config_index for p in proposals] == [i // 2 for i in range(10)]
    for c in range(5):
        assert proposals[2 * c].config == proposals[2 * c + 1].config
        assert trials[2 * c].seed != trials[2 * c + 1].seed
    # Round [3, 4) saw the 6 trials of configurations 0..2; round [4, 5) saw 8.
    assert [p.history_size for p in proposals[6:]] == [6, 6, 8, 8]


# -------------------------------------------------------------- spec validation
@pytest.mark.parametrize("overrides, error, match", [
    (dict(initial_trials=1), ValueError, "initial_trials"),
    (dict(initial_trials=None), ValueError, "needs initial_trials"),
    (dict(initial_trials=12), ValueError, "leaves none of the num_trials=12"),
    (dict(batch=0), ValueError, "batch"),
    (dict(batch=1.5), TypeError, "batch"),
    (dict(num_trials=None), ValueError, "num_trials is required"),
    (dict(sampler="halton"), ValueError, "initial_trials is only for the adaptive samplers"),
    (dict(sampler="halton", initial_trials=None), ValueError, "batch is only for"),
    (dict(sampler="external", initial_trials=-1), ValueError, "initial_trials"),
    (dict(search_space=None), ValueError, "search_space is required"),
])
def test_bad_adaptive_specs_are_refused_naming_the_field(overrides, error, match):
    with pytest.raises(error, match=match):
        gp_spec(**overrides)


def test_gp_ei_refuses_a_conditional_space_when_the_spec_is_built():
    space = search.SearchSpace({
        "optimizer": search.Choice(["nesterov", "adam"], role="scientific"),
        "lr": search.Float(1e-3, 1.0, scale="log"),
        "gamma": search.Float(0.8, 0.99, when={"optimizer": "nesterov"}),
    })
    with pytest.raises(ValueError, match=r"sampler='gp_ei'.*conditional.*'gamma'"):
        gp_spec(search_space=space)
    everything_fixed = search.SearchSpace({"optimizer": search.Fixed("adam"),
                                           "lr": search.Fixed(0.01)})
    with pytest.raises(ValueError, match="no searched parameter"):
        gp_spec(search_space=everything_fixed)
    # An external optimizer may search a conditional space (it validates its own proposals).
    assert gp_spec(search_space=space, sampler="external").adaptive


def test_adaptive_spec_round_trips_through_toml_and_the_store(tmp_path):
    spec = gp_spec(batch=3)
    assert StudySpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict()["sampler"] == {"name": "gp_ei", "seed": 0, "initial_trials": 5,
                                         "batch": 3}
    assert gp_spec(batch=None).batch == 1                         # the default: sequential
    changed = gp_spec(batch=4)
    study.run(spec, store=tmp_path, trial_fn=FAST, workers=0, progress=False)
    with pytest.raises(ValueError, match=r"different spec \(differs in \['sampler'\]\)"):
        study.run(changed, store=tmp_path, trial_fn=FAST, workers=0, progress=False)
    with Store(tmp_path, readonly=True) as store:
        assert store.get_spec("gp") == spec


def test_a_store_made_before_proposals_existed_gains_the_table(tmp_path):
    import sqlite3
    spec = gp_spec(name="h", sampler="halton", initial_trials=None, batch=None, num_trials=2)
    study.run(spec, store=tmp_path, trial_fn=FAST, workers=0, progress=False)
    conn = sqlite3.connect(tmp_path / study.DB_NAME)
    conn.execute("DROP TABLE proposals")
    conn.commit()
    conn.close()
    with Store(tmp_path, readonly=True) as store:      # a reader does not need it
        assert store.proposals("h") == []
    study.run(gp_spec(num_trials=7), store=tmp_path, trial_fn=FAST, workers=0, progress=False)
    with Store(tmp_path, readonly=True) as store:
        assert len(store.proposals("gp")) == 7 and store.proposals("h") == []


# ------------------------------------------------------------------ the command line
@pytest.mark.slow
def test_refplay_study_run_runs_a_gp_ei_toml_spec_and_resumes_it(tmp_path):
    text = (REPO / "examples" / "mnist1d_adam_gp_ei.toml").read_text()
    example = StudySpec.load(REPO / "examples" / "mnist1d_adam_gp_ei.toml")
    assert example.sampler == "gp_ei" and example.search_space.num_dimensions == 2
    # The example, shrunk to seconds: the same sampler table, 6 trials of 60 steps.
    small = (text.replace('name = "mnist1d_adam_gp_ei"', 'name = "gp_cli"')
             .replace("num_trials = 20 ", "num_trials = 6 ")
             .replace("max_train_steps = 1000", "max_train_steps = 60")
             .replace("eval_every = 100", "eval_every = 20")
             .replace("initial_trials = 8 ", "initial_trials = 3 "))
    spec_path = tmp_path / "gp_cli.toml"
    spec_path.write_text(small)
    ws = tmp_path / "ws"
    cmd = [sys.executable, "-m", "refplay", "study", "run", str(spec_path), "--workspace",
           str(ws), "--workers", "2", "--quiet", "--no-report"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "6/6 recorded" in out.stdout
    with Store(ws, readonly=True) as store:
        proposals = store.proposals("gp_cli")
        records = store.records("gp_cli")
        assert [p.proposer for p in proposals] == ["halton"] * 3 + ["gp_ei"] * 3
        assert [p.config for p in proposals] == [r["config"] for r in records]
    # Resume from the stored copy after losing the last two trials: the same records.
    shutil.copytree(ws, tmp_path / "ws2")
    import sqlite3
    conn = sqlite3.connect(tmp_path / "ws2" / study.DB_NAME)
    conn.execute("DELETE FROM measurements WHERE trial >= 4")
    conn.execute("DELETE FROM trials WHERE trial >= 4")
    # As if the driver had died after trial 3: the study row knows only trials 0..3.
    conn.execute("UPDATE studies SET trials_run = 4, best_value = NULL, best_trial = NULL, "
                 "best_step = NULL")
    conn.commit()
    conn.close()
    out = subprocess.run([sys.executable, "-m", "refplay", "study", "resume", "gp_cli",
                          "--workspace", str(tmp_path / "ws2"), "--workers", "0", "--quiet",
                          "--no-report"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    with Store(tmp_path / "ws2", readonly=True) as store:
        assert store.records("gp_cli") == records
        assert json.loads(json.dumps([p.config for p in store.proposals("gp_cli")])) == \
            [p.config for p in proposals]
