"""Trials on a Dask cluster (``LocalCluster``, 2 worker processes, 1 thread each) record
bitwise the same study as a serial run."""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import pytest

from refplay import search, study
from refplay.study import Store, StudySpec
from refplay.study.synthetic import LinearRegressionTrial
from refplay.train.result import TrialResult
from tests.helpers import optional_import

FAST = LinearRegressionTrial(max_train_steps=60, eval_every=10)


@pytest.fixture(scope="module")
def client():
    distributed = optional_import("distributed")
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def slow_trial(config, seed, *, trial_dir):
    time.sleep(config["sleep"])
    return FAST(config, seed, trial_dir=trial_dir)


def toy_spec(name="dask_toy") -> StudySpec:
    space = search.SearchSpace({
        "optimizer": search.Choice(["nesterov", "adam"], role="scientific"),
        "lr": search.Float(1e-3, 3.0, scale="log"),
        "gamma": search.Float(0.8, 0.99, when={"optimizer": "nesterov"}),
        "beta1": search.Float(0.8, 0.99, when={"optimizer": "adam"}),
    })
    return StudySpec(name=name, workload=None, search_space=space, num_trials=12,
                     max_train_steps=60, eval_every=10, metric="validation/loss")


def test_dask_records_equal_serial(client, tmp_path):
    spec = toy_spec()
    study.run(spec, store=tmp_path / "serial", trial_fn=FAST, workers=0, progress=False)
    # The same computation, 0.1 s longer, so that both workers get trials.
    paced = dataclasses.replace(FAST, sleep_seconds=0.1)
    status = study.run(spec, store=tmp_path / "dask", trial_fn=paced, progress=False,
                       executor=client.get_executor(pure=False))
    assert status.done == 12
    with Store(tmp_path / "serial", readonly=True) as a, \
            Store(tmp_path / "dask", readonly=True) as b:
        assert b.records(spec.name) == a.records(spec.name)
        workers = {t.worker for t in b.trials(spec.name)}
        complete = b.status(spec.name).counts["complete"]
    # Both worker processes ran trials, none of them in this process.
    assert len(workers) == 2 and f":{os.getpid()}" not in "".join(workers)
    assert 0 < complete < 12          # infeasible trials are among the records compared
    for i in range(12):               # the per-step gradient norms too
        sa = TrialResult.load(tmp_path / "serial" / spec.name / "trials" / f"{i:05d}")
        sb = TrialResult.load(tmp_path / "dask" / spec.name / "trials" / f"{i:05d}")
        assert np.array_equal(sa.grad_norms, sb.grad_norms)


def test_default_workload_trials_on_dask_equal_serial(client, tmp_path):
    spec = StudySpec(name="dask_spirals", workload="spirals_mlp", num_trials=3,
                     max_train_steps=40, eval_every=10, metric="validation/error_rate",
                     search_space=search.SearchSpace(
                         optimizer=search.Fixed("nesterov"), gamma=search.Float(0.8, 0.99),
                         lr=search.Float(1e-2, 1.0, scale="log"), width=search.Fixed(8)))
    study.run(spec, store=tmp_path / "serial", workers=0, progress=False)
    study.run(spec, store=tmp_path / "dask", executor=client.get_executor(pure=False),
              progress=False)
    with Store(tmp_path / "serial", readonly=True) as a, \
            Store(tmp_path / "dask", readonly=True) as b:
        assert b.records(spec.name) == a.records(spec.name)
    assert any((tmp_path / "dask" / spec.name / "trials" / "00000" / "checkpoints").iterdir())


def test_time_limit_in_dask_worker_threads_is_checked_when_the_trial_returns(client, tmp_path):
    configs = [{"optimizer": "adam", "lr": 0.01, "sleep": s} for s in (0.0, 1.5)]
    spec = StudySpec(name="slow", workload=None, sampler="explicit", configs=configs,
                     max_train_steps=60, eval_every=10, metric="validation/loss")
    study.run(spec, store=tmp_path, trial_fn=slow_trial, time_limit=0.75, progress=False,
              executor=client.get_executor(pure=False))
    with Store(tmp_path, readonly=True) as store:
        fast, slow = store.trials("slow")
    assert fast.status == "complete"
    assert slow.status == "failed"
    assert "time limit of 0.75 s (checked when it returned" in slow.reason
