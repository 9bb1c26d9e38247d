"""``StudySpec``: what a study is, written down before it runs.

The playbook ("Creating a set of studies"): *"A study specifies a set of
hyperparameter configurations to be run for subsequent analysis. Each
configuration is called a 'trial'. Creating a study typically involves
choosing the hyperparameters that will vary across trials, choosing what values
those hyperparameters can take on (the 'search space'), choosing the number of
trials, and choosing an automated search algorithm to sample that many trials
from the search space. Alternatively, we could create a study by specifying the
set of hyperparameter configurations manually."*

A spec is a frozen value: the study's name, its notes and goal, the workload,
the search space (with scientific / nuisance / fixed roles), the sampler and
its seed, the number of trials, a fixed ``max_train_steps`` (never tuned inside
a study), ``eval_every``, the number of best checkpoints to keep, the metric
to select on, and optional repeats (the same configuration with different
trial seeds, to measure trial variance).

**A trial is a pure function of (spec, trial index)** with the samplers
``halton``, ``random``, ``grid`` and ``explicit``. Trial ``t`` runs
configuration ``t // repeats`` of the sampled list with the seed
``SeedSequence(seed, spawn_key=(t,))``, which is exactly child ``t`` of
``SeedSequence(seed).spawn(...)`` whatever the budget. Resuming a study, or
spreading it over machines, is therefore "run the indices that have no result
yet".

**Adaptive samplers** (``gp_ei``, ``external``) break that rule on purpose:
the playbook's "after exploration concludes, Bayesian optimization" needs a
trial's configuration to depend on the results before it. The spec fixes
everything else: the first ``initial_trials`` configurations come from the
Halton sequence of ``seed`` (quasi-random exploration); the rest are proposed
in *rounds* of ``batch`` configurations, by :func:`refplay.search.gp_ei` or by
an external optimizer; round ``[k, k + batch)`` is proposed only once trials
``[0, k)`` are all recorded (:meth:`StudySpec.proposal_rounds`). The seed
still depends only on the index, and the runner records each proposal in the
store before the trial runs, so a resumed study replays it
(:mod:`refplay.study.runner`)::

    [sampler]
    name = "gp_ei"          # or "external": study.run(spec, ..., proposer=fn)
    seed = 0
    initial_trials = 8      # Halton trials before the first GP round (>= 2 for gp_ei)
    batch = 2               # configurations per round: trials that can run at once

Specs load from TOML (stdlib ``tomllib``) or JSON files, or are built in
Python; every field is validated when the spec is built, and errors name the
key. A TOML spec looks like ``examples/mnist1d_nesterov_vs_adam.toml``::

    name = "nesterov_vs_adam"
    workload = "mnist1d_cnn"
    num_trials = 16
    max_train_steps = 2000
    eval_every = 100
    metric = "validation/error_rate"
    mode = "min"

    [trial]             # optional: how every trial runs (refplay.train.TrialSettings)
    eval_train = "all"
    divergence_factor = 10.0

    [sampler]
    name = "halton"
    seed = 0

    [search_space]
    ...   # refplay.search.SearchSpace.from_dict format

The ``[trial]`` table takes any field of :class:`refplay.train.TrialSettings`
(``dense_eval_steps``, ``eval_test``, ``eval_train``, ``periodic_eval_size``,
``divergence_factor``, ``divergence_window``, ``divergence_steps``, ``max_final_loss``, and
``max_train_steps``, ``eval_every``, ``keep_best``, which may also stand at
the top level as before). The study's ``metric`` is every trial's selection
metric; a metric no trial would report (``ema/...`` without ``ema_decay``,
``train_eval/...`` without ``eval_train``) is refused when the spec is
built, and so is any ``test/...`` metric: the playbook touches the test set
only after exploration concludes (set ``eval_test = true`` to report it).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import tomllib
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from refplay import _validate, rng, search
from refplay.search import gp
from refplay.train import WORKLOADS
from refplay.train.settings import TrialSettings, curve_names, selectable_metrics

__all__ = ["StudySpec", "Trial", "SAMPLERS", "ADAPTIVE_SAMPLERS", "SPLITS", "check_study_name",
           "trial_seed"]

SAMPLERS = ("halton", "random", "grid", "explicit", "gp_ei", "external")
#: Samplers whose configurations depend on earlier results (proposed in rounds).
ADAPTIVE_SAMPLERS = ("gp_ei", "external")
SPLITS = ("train", "validation", "test")
MODES = ("min", "max")

# Study names become directory names and command-line arguments.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_NAME_MAX = 128
_METRIC_RE = re.compile(r"(ema/)?(train|train_eval|validation|test)/[A-Za-z0-9_]+")

# Keys of the dict / TOML form, in the order they are written.
_TOP_KEYS = ("name", "description", "goal", "workload", "workload_options", "num_trials",
             "repeats", "seed", "max_train_steps", "eval_every", "keep_best", "metric", "mode",
             "trial", "sampler", "search_space")
# TrialSettings fields that are also top-level spec keys.
_FLAT_SETTINGS = ("max_train_steps", "eval_every", "keep_best")
_SAMPLER_KEYS = ("name", "seed", "points_per_dim", "configs", "initial_trials", "batch")


def check_study_name(name: object) -> str:
    """Return ``name`` if it is a safe study name, else raise ValueError/TypeError.

    Names become paths (``WORKSPACE/NAME/``), so only letters, digits, ``_``,
    ``-`` and ``.`` are allowed; the name starts with a letter or digit, has no
    ``..`` and at most 128 characters.
    """
    if not isinstance(name, str):
        raise TypeError(f"study name must be a string, got {name!r} ({type(name).__name__})")
    if (not name or len(name) > _NAME_MAX or ".." in name
            or _NAME_RE.fullmatch(name) is None):
        raise ValueError(
            f"study name {name!r} is not allowed: use 1-{_NAME_MAX} letters, digits, '_', '-' "
            f"or '.', starting with a letter or digit, without '..' or slashes "
            f"(the name becomes a directory)")
    return name


def trial_seed(seed: int, index: int) -> int:
    """The seed of trial ``index``: child ``index`` of ``SeedSequence(seed)``, as an int.

    ``SeedSequence(seed, spawn_key=(index,))`` is the ``index``-th child that
    ``SeedSequence(seed).spawn(n)`` would make for any ``n > index``, so a
    trial's seed never depends on the size of the study.
    """
    return rng.seed_int(rng.child(seed, index))


class Trial(NamedTuple):
    """One unit of a study: configuration ``config_index`` run with ``seed``."""

    index: int
    config_index: int
    repeat: int
    config: dict
    seed: int


@dataclass(frozen=True, kw_only=True)
class StudySpec:
    """A study: search space + sampler + budget + what to run and select on.

    Parameters
    ----------
    name:
        Safe identifier (see :func:`check_study_name`); the study's key in the
        store and its folder name.
    settings:
        The :class:`refplay.train.TrialSettings` every trial runs with
        (``max_train_steps``, ``eval_every``, ``keep_best``, evaluation
        options, divergence rule); its ``selection_metric`` is ``metric``.
        The playbook: ``max_train_steps`` is fixed for all trials of a study,
        never tuned inside it. ``spec.max_train_steps``, ``spec.eval_every``
        and ``spec.keep_best`` read it.
    max_train_steps, eval_every, keep_best, trial_settings:
        The flat form a TOML file has (top-level keys and the ``[trial]``
        table, a dict of the other ``TrialSettings`` fields): given instead
        of ``settings``, they are folded into it when the spec is built.
    search_space:
        A ``refplay.search.SearchSpace`` (or its dict form). May be ``None``
        only with ``sampler="explicit"``.
    num_trials:
        Number of configurations sampled. Required for ``halton`` and
        ``random``; for ``grid`` and ``explicit`` it defaults to (and must
        equal) the number of configurations.
    repeats:
        Trials per configuration, each with its own seed; the budget is
        ``num_trials * repeats``.
    workload, workload_options:
        The name in ``refplay.train.WORKLOADS`` and keyword arguments of
        ``train.get_workload``. ``workload=None`` means the study is run with a
        custom ``trial_fn`` (``study.run(spec, trial_fn=...)``).
    sampler, sampler_seed, points_per_dim, configs:
        ``"halton"`` (default; the playbook's quasi-random search),
        ``"random"``, ``"grid"`` (with ``points_per_dim``) or ``"explicit"``
        (with the list ``configs``); or an adaptive sampler: ``"gp_ei"``
        (Bayesian optimization, :func:`refplay.search.gp_ei`) or
        ``"external"`` (an optimizer passed to ``study.run(proposer=...)``).
    initial_trials, batch:
        Adaptive samplers only. ``initial_trials`` configurations come from
        the Halton sequence of ``sampler_seed`` (at least 2 for ``gp_ei``,
        which needs two feasible trials to fit; may be 0 for ``external``);
        the others are proposed ``batch`` at a time (default 1), each round
        once every earlier trial is recorded. ``batch`` is how many trials can
        run at once after the initial ones: set it to the number of workers
        to keep them busy (the playbook's footnote 3: the larger the batch,
        the less an adaptive method gains over quasi-random search).
    seed:
        Root of the trial seeds (see :func:`trial_seed`).
    metric, mode:
        What "best" means, e.g. ``"validation/error_rate"``, ``"min"``; the
        metric also selects each trial's best checkpoint.
    description, goal:
        The playbook's notes: a short description of the study and the goal of
        this round of experiments.
    source:
        The spec file this spec was loaded from, if any (not part of the
        study's identity).
    """

    name: str
    settings: TrialSettings | None = None
    search_space: Any = None
    num_trials: int | None = None
    repeats: int = 1
    workload: str | None = None
    workload_options: dict = field(default_factory=dict)
    sampler: str = "halton"
    sampler_seed: int = 0
    points_per_dim: int | None = None
    configs: tuple | None = None
    initial_trials: int | None = None
    batch: int | None = None
    seed: int = 0
    metric: str = "validation/error_rate"
    mode: str = "min"
    description: str = ""
    goal: str = ""
    source: str | None = field(default=None, compare=False)
    # The flat form (TOML's top-level keys and its [trial] table), folded into settings.
    max_train_steps: InitVar[int | None] = None
    eval_every: InitVar[int | None] = None
    keep_best: InitVar[int | None] = None
    trial_settings: InitVar[dict | None] = None

    # ------------------------------------------------------------ validation
    def __post_init__(self, max_train_steps, eval_every, keep_best, trial_settings) -> None:
        check_study_name(self.name)
        flat = {"max_train_steps": max_train_steps, "eval_every": eval_every,
                "keep_best": keep_best}
        if self.settings is None:
            for key in ("max_train_steps", "eval_every"):
                if flat[key] is None:
                    raise ValueError(f"study spec is missing the required key {key!r} (or "
                                     f"give settings=TrialSettings(...))")
            _validate.integer("max_train_steps", max_train_steps, low=1)
            _validate.integer("eval_every", eval_every, low=1)
            if keep_best is not None:
                _validate.integer("keep_best", keep_best, low=0)
        _validate.integer("repeats", self.repeats, low=1)
        _validate.integer("seed", self.seed, low=0)
        _validate.integer("sampler_seed", self.sampler_seed, low=0)
        for key in ("description", "goal"):
            if not isinstance(getattr(self, key), str):
                raise TypeError(f"{key} must be a string, got {getattr(self, key)!r}")
        _validate.one_of("mode", self.mode, MODES)
        _check_metric(self.metric)
        _validate.one_of("sampler", self.sampler, SAMPLERS)
        if not isinstance(self.workload_options, dict):
            raise TypeError(f"workload_options must be a table/dict, got {self.workload_options!r}")
        object.__setattr__(self, "settings", self._whole_settings(flat, trial_settings))
        if self.workload is None:
            if self.workload_options:
                raise ValueError("workload_options given without a workload")
        else:
            _check_workload(self.workload, self.mode)

        # Normalize the search space to a SearchSpace object (frozen: use object.__setattr__).
        space = self.search_space
        if isinstance(space, dict):
            space = search.SearchSpace.from_dict(space)
            object.__setattr__(self, "search_space", space)
        if space is None and self.sampler != "explicit":
            raise ValueError(f"search_space is required with sampler={self.sampler!r}; "
                             f"only sampler='explicit' may omit it")

        self._check_sampler_options()
        object.__setattr__(self, "workload_options", _plain(self.workload_options))
        if self.workload is not None:
            self._check_metric_is_reported()

    @property
    def adaptive(self) -> bool:
        """True if later configurations depend on earlier results (``gp_ei``, ``external``)."""
        return self.sampler in ADAPTIVE_SAMPLERS

    def _whole_settings(self, flat: dict, table: dict | None) -> TrialSettings:
        """The spec's ``TrialSettings``: given whole, or built once from the flat form."""
        if self.settings is not None:
            if not isinstance(self.settings, TrialSettings):
                raise TypeError(f"settings must be a refplay.train.TrialSettings, got "
                                f"{self.settings!r}")
            # A flat key beside settings may only repeat it (dataclasses.replace passes both).
            clash = [k for k, v in flat.items()
                     if v is not None and v != getattr(self.settings, k)]
            if clash or table:
                raise ValueError(f"give the trial settings once: settings= or the flat keys "
                                 f"{clash or ['trial_settings']}, not both")
            if self.settings.selection_metric not in (None, self.metric):
                raise ValueError(f"settings.selection_metric="
                                 f"{self.settings.selection_metric!r} differs from the study's "
                                 f"metric={self.metric!r}; the study's metric selects")
            return self.settings.replace(selection_metric=self.metric)
        table = {} if table is None else table
        if not isinstance(table, dict):
            raise TypeError(f"trial must be a table/dict of trial settings, got {table!r}")
        for key in _FLAT_SETTINGS:
            if key in table:
                raise ValueError(f"trial.{key} duplicates the top-level key {key!r}; "
                                 f"give it once, at the top level")
        if "selection_metric" in table:
            raise ValueError("trial.selection_metric is the study's metric; set 'metric' instead")
        fields = {k: v for k, v in flat.items() if v is not None}
        try:
            return TrialSettings.from_dict({**fields, "selection_metric": self.metric,
                                            **_plain(dict(table))})
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"trial: {exc}") from None

    def _trial_table(self) -> dict:
        """The ``[trial]`` table of the dict form: the settings that differ from the defaults."""
        defaults = {f.name: f.default for f in dataclasses.fields(TrialSettings)}
        return {k: v for k, v in self.settings.to_dict().items()
                if k not in (*_FLAT_SETTINGS, "selection_metric") and v != defaults[k]}

    def _check_metric_is_reported(self) -> None:
        """Refuse a metric that the workload's trials would not report (named, before any trial)."""
        configs = self.sampled_configs
        if self.adaptive:
            # Every proposal is a config of the space: judge the space by a Halton sample.
            configs = search.halton(self.search_space, self.num_trials, self.sampler_seed)
        ema = bool(configs) and all(c.get("ema_decay") is not None for c in configs)
        clip = bool(configs) and all(c.get("grad_clip") is not None for c in configs)
        names = curve_names(WORKLOADS[self.workload].task, self.settings, grad_clip=clip, ema=ema)
        allowed = selectable_metrics(names)
        if self.metric not in allowed:
            hint = ""
            if self.metric.startswith("ema/"):
                hint = " (ema/... needs ema_decay in every trial config)"
            elif self.metric.startswith("train_eval/"):
                hint = " (train_eval/... needs trial.eval_train)"
            raise ValueError(f"metric={self.metric!r} is not reported by the trials of workload "
                             f"{self.workload!r}{hint}; choose one of {allowed}")

    def _check_sampler_options(self) -> None:
        if self.sampler != "grid" and self.points_per_dim is not None:
            raise ValueError(f"points_per_dim is only for sampler='grid', not {self.sampler!r}")
        if self.sampler != "explicit" and self.configs is not None:
            raise ValueError(f"configs is only for sampler='explicit', not {self.sampler!r}")
        if self.sampler == "explicit":
            if not isinstance(self.configs, (list, tuple)) or not self.configs:
                raise ValueError("sampler='explicit' needs configs: a non-empty list of tables")
            for i, c in enumerate(self.configs):
                if not isinstance(c, dict):
                    raise TypeError(f"configs[{i}] must be a table/dict, got {c!r}")
            object.__setattr__(self, "configs", tuple(_plain(dict(c)) for c in self.configs))
        if self.sampler == "grid":
            if isinstance(self.points_per_dim, dict):
                for k, v in self.points_per_dim.items():
                    _validate.integer(f"points_per_dim[{k!r}]", v, low=1)
            else:
                _validate.integer("points_per_dim", self.points_per_dim, low=1)
        if self.adaptive:
            self._check_adaptive_options()
        elif self.initial_trials is not None or self.batch is not None:
            key = "initial_trials" if self.initial_trials is not None else "batch"
            raise ValueError(f"{key} is only for the adaptive samplers {list(ADAPTIVE_SAMPLERS)}, "
                             f"not sampler={self.sampler!r}")
        if self.sampler in ("halton", "random", *ADAPTIVE_SAMPLERS):
            if self.num_trials is None:
                raise ValueError(f"num_trials is required with sampler={self.sampler!r}")
            _validate.integer("num_trials", self.num_trials, low=1)
        else:
            # grid and explicit fix the number of configurations themselves.
            n = len(self.sampled_configs)
            if self.num_trials is None:
                object.__setattr__(self, "num_trials", n)
            elif _validate.integer("num_trials", self.num_trials, low=1) != n:
                raise ValueError(f"num_trials={self.num_trials} but sampler={self.sampler!r} "
                                 f"gives {n} configurations; omit num_trials or set it to {n}")

    def _check_adaptive_options(self) -> None:
        """``gp_ei`` / ``external``: the number of Halton trials first, the batch, the space."""
        if self.num_trials is None:
            raise ValueError(f"num_trials is required with sampler={self.sampler!r}")
        num_trials = _validate.integer("num_trials", self.num_trials, low=1)
        low = 2 if self.sampler == "gp_ei" else 0
        if self.initial_trials is None:
            raise ValueError(
                f"sampler={self.sampler!r} needs initial_trials: how many quasi-random (Halton) "
                f"trials come before the first proposal (at least {low}"
                + (", since the GP needs two feasible trials to fit)" if low else ")"))
        initial = _validate.integer("initial_trials", self.initial_trials, low=low)
        if initial >= num_trials:
            raise ValueError(f"initial_trials={initial} leaves none of the num_trials={num_trials} "
                             f"trials to propose; use fewer initial trials, or sampler='halton'")
        if self.batch is None:
            object.__setattr__(self, "batch", 1)
        _validate.integer("batch", self.batch, low=1)
        if self.sampler == "gp_ei":
            try:
                gp.check_space(self.search_space)
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"sampler='gp_ei': {exc}") from None

    # ---------------------------------------------------------------- trials
    @property
    def budget(self) -> int:
        """Number of trials in the study: ``num_trials * repeats``."""
        return self.num_trials * self.repeats

    @functools.cached_property
    def sampled_configs(self) -> list[dict]:
        """The configurations the spec alone decides, in trial order (computed once).

        All of them for ``halton``, ``random``, ``grid`` and ``explicit``; the
        ``initial_trials`` Halton configurations for an adaptive sampler (the
        others are proposed as the study runs and recorded in the store:
        ``Store.proposals``).
        """
        if self.adaptive:
            configs = search.halton(self.search_space, self.initial_trials, self.sampler_seed)
        elif self.sampler == "explicit":
            configs = [dict(c) for c in self.configs]
            if self.search_space is not None:
                configs = search.explicit(self.search_space, configs)
        elif self.sampler == "halton":
            configs = search.halton(self.search_space, self.num_trials, self.sampler_seed)
        elif self.sampler == "random":
            configs = search.random(self.search_space, self.num_trials, self.sampler_seed)
        else:
            configs = search.grid(self.search_space, self.points_per_dim)
        return [_plain(dict(c)) for c in configs]

    def trial(self, index: int, config: dict | None = None) -> Trial:
        """Trial ``index`` (0 <= index < budget): its configuration and seed.

        ``config`` is the proposed configuration of a trial of an adaptive
        study beyond its initial ones (the runner passes the recorded
        proposal); the other trials take theirs from :attr:`sampled_configs`.
        """
        _validate.integer("trial index", index, low=0, high=self.budget - 1)
        config_index, repeat = divmod(index, self.repeats)
        if config is not None:
            if not self.adaptive:
                raise ValueError(f"trial {index}: a config can be given only for an adaptive "
                                 f"sampler {list(ADAPTIVE_SAMPLERS)}; sampler={self.sampler!r} "
                                 f"decides every config itself")
            if not isinstance(config, dict):
                raise TypeError(f"trial {index}: config must be a dict, got {config!r}")
            config = _plain(dict(config))
        elif config_index < len(self.sampled_configs):
            config = dict(self.sampled_configs[config_index])
        else:
            raise ValueError(f"trial {index} of study {self.name!r} (sampler={self.sampler!r}) "
                             f"has no configuration until it is proposed; proposals are "
                             f"recorded in the store (Store.proposals)")
        return Trial(index, config_index, repeat, config, trial_seed(self.seed, index))

    def trials(self) -> list[Trial]:
        """Every trial of the study (not for adaptive samplers, whose configs are proposed)."""
        if self.adaptive:
            raise ValueError(f"study {self.name!r} (sampler={self.sampler!r}) proposes its "
                             f"configurations as it runs; read them with Store.proposals")
        return [self.trial(i) for i in range(self.budget)]

    def proposal_rounds(self) -> list[range]:
        """The rounds of an adaptive study, as ranges of configuration indices.

        ``range(0, initial_trials)`` (the Halton configurations; absent if
        ``initial_trials=0``), then ``range(k, k + batch)`` up to
        ``num_trials``. Round ``[k, k + batch)`` is proposed once the trials
        of configurations ``[0, k)`` (trials ``[0, k * repeats)``) are all
        recorded; it depends on the batch size, never on the number of
        workers.
        """
        if not self.adaptive:
            raise ValueError(f"sampler={self.sampler!r} has no proposal rounds; only the adaptive "
                             f"samplers {list(ADAPTIVE_SAMPLERS)} do")
        rounds = [range(0, self.initial_trials)] if self.initial_trials else []
        rounds += [range(k, min(k + self.batch, self.num_trials))
                   for k in range(self.initial_trials, self.num_trials, self.batch)]
        return rounds

    # ------------------------------------------------------------- dict form
    def to_dict(self) -> dict:
        """The plain dict (TOML / JSON) form; ``StudySpec.from_dict`` inverts it."""
        sampler: dict = {"name": self.sampler}
        if self.sampler in ("halton", "random", *ADAPTIVE_SAMPLERS):
            sampler["seed"] = self.sampler_seed
        if self.adaptive:
            sampler["initial_trials"] = self.initial_trials
            sampler["batch"] = self.batch
        if self.points_per_dim is not None:
            sampler["points_per_dim"] = _plain(self.points_per_dim)
        if self.configs is not None:
            sampler["configs"] = [dict(c) for c in self.configs]
        d = {"name": self.name, "description": self.description, "goal": self.goal,
             "workload": self.workload, "workload_options": dict(self.workload_options),
             "num_trials": self.num_trials, "repeats": self.repeats, "seed": self.seed,
             "max_train_steps": self.settings.max_train_steps,
             "eval_every": self.settings.eval_every, "keep_best": self.settings.keep_best,
             "metric": self.metric, "mode": self.mode,
             "sampler": sampler,
             "search_space": None if self.search_space is None else self.search_space.to_dict()}
        trial = self._trial_table()
        if trial:
            # Only when some setting differs from its default: specs without a [trial]
            # table keep their stored identity.
            d["trial"] = trial
        return d

    @classmethod
    def from_dict(cls, d: dict, *, source: str | None = None) -> "StudySpec":
        """Build a spec from its dict form; unknown keys are errors naming the key."""
        if not isinstance(d, dict):
            raise TypeError(f"a study spec must be a table/dict, got {type(d).__name__}")
        unknown = sorted(set(d) - set(_TOP_KEYS))
        if unknown:
            raise ValueError(f"unknown study spec key(s) {unknown}; allowed {list(_TOP_KEYS)}")
        if "name" not in d:
            raise ValueError("study spec is missing the required key 'name'")
        kwargs = {k: v for k, v in d.items() if k not in ("sampler",)}
        sampler = d.get("sampler", {"name": "halton"})
        if isinstance(sampler, str):
            sampler = {"name": sampler}
        if not isinstance(sampler, dict):
            raise TypeError(f"sampler must be a table with a name, got {sampler!r}")
        unknown = sorted(set(sampler) - set(_SAMPLER_KEYS))
        if unknown:
            raise ValueError(f"unknown sampler key(s) {unknown}; allowed {list(_SAMPLER_KEYS)}")
        kwargs["sampler"] = sampler.get("name", "halton")
        if "seed" in sampler:
            kwargs["sampler_seed"] = sampler["seed"]
        if "points_per_dim" in sampler:
            kwargs["points_per_dim"] = sampler["points_per_dim"]
        for key in ("configs", "initial_trials", "batch"):
            if key in sampler:
                kwargs[key] = sampler[key]
        if kwargs.get("workload_options") is None:
            kwargs.pop("workload_options", None)
        trial = kwargs.pop("trial", None)
        if trial is not None and not isinstance(trial, dict):
            raise TypeError(f"trial must be a table of trial settings, got {trial!r}")
        if isinstance(trial, dict):
            # max_train_steps, eval_every and keep_best may sit in [trial] too.
            trial = dict(trial)
            for key in _FLAT_SETTINGS:
                if key in trial:
                    if key in kwargs and kwargs[key] != trial[key]:
                        raise ValueError(f"{key} is given twice with different values: "
                                         f"{kwargs[key]!r} and trial.{key}={trial[key]!r}")
                    kwargs[key] = trial.pop(key)
            kwargs["trial_settings"] = trial
        for key in ("max_train_steps", "eval_every"):
            if key not in kwargs:
                raise ValueError(f"study spec is missing the required key {key!r}")
        return cls(**kwargs, source=source)

    def to_json(self) -> str:
        """The dict form as JSON (what the store keeps as the study's spec)."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "StudySpec":
        """Load a spec from a ``.toml`` or ``.json`` file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"study spec file {str(path)!r} does not exist")
        text = path.read_text()
        if path.suffix == ".toml":
            try:
                d = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"{path}: not valid TOML: {exc}") from None
        elif path.suffix == ".json":
            try:
                d = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: not valid JSON: {exc}") from None
        else:
            raise ValueError(f"study spec file {str(path)!r} must end in .toml or .json")
        try:
            return cls.from_dict(d, source=str(path))
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{path}: {exc}") from None

    def identity(self) -> dict:
        """The fields that decide what the trials compute (not the notes).

        Re-running or resuming a study with a spec whose identity differs from
        the stored one is refused: the recorded trials would not belong to it.
        """
        d = self.to_dict()
        for key in ("description", "goal"):
            d.pop(key)
        return d


def _read_setting(key: str) -> property:
    return property(lambda spec: getattr(spec.settings, key),
                    doc=f"``settings.{key}``: the study's {key}, the same for every trial.")


# The flat names read the whole settings (assigned after the dataclass is made, where
# the same names are the constructor's init-only arguments).
for _key in _FLAT_SETTINGS:
    setattr(StudySpec, _key, _read_setting(_key))
del _key


def _check_metric(metric: object) -> None:
    if not isinstance(metric, str) or _METRIC_RE.fullmatch(metric) is None:
        raise ValueError(f"metric={metric!r} is not allowed: use 'SPLIT/NAME' with SPLIT one of "
                         f"{list(SPLITS)} (optionally 'ema/SPLIT/NAME'), "
                         f"e.g. 'validation/error_rate'")
    if metric.startswith(("test/", "ema/test/")):
        raise ValueError(f"metric={metric!r} selects on the test split; the playbook touches the "
                         f"test set only after exploration concludes. Select on "
                         f"'validation/...' and set trial.eval_test = true to report test metrics")


def _check_workload(name: object, mode: str) -> None:
    """A built-in workload (train's metrics are lower-is-better, so mode is 'min')."""
    if not isinstance(name, str):
        raise TypeError(f"workload must be a string (a name in refplay.train.WORKLOADS), "
                        f"got {name!r}")
    _validate.one_of("workload", name, WORKLOADS)
    if mode != "min":
        raise ValueError(f"mode={mode!r} is not allowed with workload {name!r}: its metrics "
                         f"(loss, error rate) are lower-is-better; use mode='min'")


def _plain(obj):
    """Convert NumPy scalars (and nested containers) to plain Python values."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"configuration values must be finite, got {obj!r}")
    return obj
