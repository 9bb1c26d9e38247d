"""Search spaces: hyperparameters with scales, roles and conditions.

The playbook's vocabulary (section "Identifying scientific, nuisance, and fixed
hyperparameters"):

* **scientific** hyperparameters are "those whose effect on the model's
  performance we're trying to measure";
* **nuisance** hyperparameters "need to be optimized over in order to fairly
  compare different values of the scientific hyperparameters" (the default role
  of a searched parameter);
* **fixed** hyperparameters "will have their values fixed in the current round
  of experiments" (:class:`Fixed`).

**Conditional** hyperparameters exist only for some values of another one:
``gamma=Float(0.8, 0.99, when={"optimizer": "nesterov"})`` (Nesterov's momentum γ). And "we should
not assume two conditional hyperparameters are the same just because they have
the same name! ... the conditional hyperparameter called ``learning_rate`` is a
*different* hyperparameter for ``optimizer="Nesterov_momentum"`` versus
``optimizer="Adam"``." refplay supports that with **namespaced names**: a
parameter's *name* is its identity in the space and may contain ``/``; the key
it writes into a trial config is the last ``/``-separated part::

    space = SearchSpace({
        "optimizer": Choice(["nesterov", "adam"], role="scientific"),
        "nesterov/lr": Float(1e-2, 10.0, scale="log", when={"optimizer": "nesterov"}),
        "adam/lr": Float(1e-4, 1e-1, scale="log", when={"optimizer": "adam"}),
        "gamma": Float(0.8, 0.99, when={"optimizer": "nesterov"}),
    })
    config = {"optimizer": "adam", "lr": 3e-3}          # what train.run_trial receives
    space.active_parameters(config)                     # {"optimizer": "adam", "adam/lr": 0.003}

Two parameters may share a config key only if their conditions make them
mutually exclusive (a common parent with disjoint values); otherwise building
the space is an error. Configs are plain dicts of Python scalars, keyed by
config key, holding exactly the active parameters.

A space is validated when it is built (every error is a ``ValueError`` or
``TypeError`` naming the parameter) and converts to and from a plain dict, the
shape of a TOML table in a study spec::

    [space.optimizer]
    type = "choice"
    values = ["nesterov", "adam"]
    role = "scientific"

    [space."nesterov/lr"]
    type = "float"
    low = 0.01
    high = 10.0
    scale = "log"
    when = { optimizer = ["nesterov"] }
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

__all__ = ["Float", "Int", "Discrete", "Choice", "Fixed", "SearchSpace", "ROLES", "SCALES"]

ROLES = ("scientific", "nuisance", "fixed")
SCALES = ("linear", "log", "log1m")
Scalar = float | int | str | bool | None
Condition = Mapping[str, Any]


# --------------------------------------------------------------------------
# Scalars: configs hold plain Python values; numpy scalars are converted.
# --------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """numpy scalars -> the Python scalar of the same kind; other values unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, str)) or (
        isinstance(value, numbers.Real) and math.isfinite(value))


def _same_scalar(a: Any, b: Any) -> bool:
    """Equality that keeps bools, numbers, strings and None apart (1 is not True)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, numbers.Real) and isinstance(b, numbers.Real):
        return a == b
    return type(a) is type(b) and a == b


def _find(values: Sequence, value: Any) -> int | None:
    for i, v in enumerate(values):
        if _same_scalar(v, value):
            return i
    return None


def _scalar_list(where: str, values: Any, *, numeric: bool) -> tuple:
    """Validate a non-empty list of distinct scalars (numbers only if ``numeric``)."""
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence | np.ndarray):
        raise TypeError(f"{where}: values must be a list, got {values!r}")
    out: list = []
    for v in map(_plain, values):
        if numeric and (isinstance(v, bool) or not isinstance(v, numbers.Real)):
            raise TypeError(f"{where}: values must be numbers, got {v!r} ({type(v).__name__})")
        if not _is_scalar(v):
            raise TypeError(f"{where}: values must be finite numbers, strings, bools or None; "
                            f"got {v!r} ({type(v).__name__})")
        if _find(out, v) is not None:
            raise ValueError(f"{where}: duplicate value {v!r} in {list(values)!r}")
        out.append(v)
    if not out:
        raise ValueError(f"{where}: values must not be empty")
    return tuple(out)


# --------------------------------------------------------------------------
# Parameter kinds. Each is a small spec; SearchSpace validates it with its name.
# --------------------------------------------------------------------------


class _Parameter:
    """Shared by every kind: ``role`` and ``when`` (the conditions that make it active).

    Parameters are small immutable specs; :class:`SearchSpace` validates each one
    with its name when the space is built.
    """

    kind: ClassVar[str]
    _fields: ClassVar[tuple[str, ...]]  # the kind's own fields, in to_dict order
    role: str
    when: Condition | None

    def _init(self, **fields: Any) -> None:
        # Lists become tuples here so that equal specs compare equal; the checks
        # (and their error messages) happen when a SearchSpace is built.
        for k, v in fields.items():
            if k == "values" and isinstance(v, (list, np.ndarray)):
                v = tuple(v)
            if k == "when" and isinstance(v, Mapping):
                v = {p: tuple(vs) if isinstance(vs, (list, tuple, np.ndarray)) else (vs,)
                     for p, vs in v.items()}
            object.__setattr__(self, k, v)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _replace(self, **changes: Any) -> "_Parameter":
        new = object.__new__(type(self))
        new._init(**{f: getattr(self, f) for f in self._fields + ("role", "when")})
        new._init(**changes)
        return new

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self._fields + ("role", "when"))

    __hash__ = None  # type: ignore[assignment]  # ``when`` is a dict

    def __repr__(self) -> str:
        args = [repr(getattr(self, f)) for f in self._fields]
        if self.role != ("fixed" if isinstance(self, Fixed) else "nuisance"):
            args.append(f"role={self.role!r}")
        if self.when is not None:
            args.append(f"when={self.when!r}")
        return f"{type(self).__name__}({', '.join(args)})"

    # -- validation (called by SearchSpace with the parameter's name) ---------
    def _checked(self, name: str) -> "_Parameter":
        if self.role not in ROLES:
            raise ValueError(f"parameter {name!r}: role={self.role!r} is not allowed; "
                             f"choose one of {list(ROLES)}")
        if self.role == "fixed":
            raise ValueError(f"parameter {name!r}: role='fixed' is for search.Fixed(value); a "
                             f"searched parameter is 'scientific' or 'nuisance'")
        return self._replace(when=_checked_when(name, self.when))

    # -- per kind ------------------------------------------------------------
    def _values(self) -> tuple | None:
        """The finite set of values (for parents of conditions), or None."""
        return None

    def _from_unit(self, u: np.ndarray) -> list:
        raise NotImplementedError

    def _to_unit(self, value: Any) -> float:
        raise NotImplementedError

    def _grid(self, m: int) -> list:
        raise NotImplementedError

    def _check_value(self, where: str, value: Any) -> Any:
        raise NotImplementedError

    def _to_dict(self) -> dict:
        d = {"type": self.kind}
        d.update({f: _to_plain(getattr(self, f)) for f in self._fields})
        d["role"] = self.role
        if self.when is not None:
            d["when"] = {p: list(v) for p, v in self.when.items()}
        return d


def _to_plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _checked_when(name: str, when: Condition | None) -> dict[str, tuple] | None:
    """Normalize ``{"optimizer": "adam"}`` / ``{"optimizer": ["adam", "nadam"]}``."""
    if when is None:
        return None
    if not isinstance(when, Mapping) or not when:
        raise TypeError(f"parameter {name!r}: when must be a non-empty dict "
                        f"{{parent_name: value or [values]}}, got {when!r}")
    out: dict[str, tuple] = {}
    for parent, values in when.items():
        if not isinstance(parent, str):
            raise TypeError(f"parameter {name!r}: when keys must be parameter names, "
                            f"got {parent!r}")
        if not isinstance(values, (list, tuple, np.ndarray)):
            values = [values]  # one parent value
        out[parent] = _scalar_list(f"parameter {name!r}: when[{parent!r}]", values, numeric=False)
    return out


def _check_bounds(name: str, low: Any, high: Any, scale: str, *, integer: bool) -> tuple:
    kind = "integers" if integer else "finite real numbers"
    for field_name, v in (("low", low), ("high", high)):
        v = _plain(v)
        ok = (isinstance(v, numbers.Integral) if integer else isinstance(v, numbers.Real))
        if isinstance(v, bool) or not ok:
            raise TypeError(f"parameter {name!r}: {field_name}={v!r} must be {kind}")
        if not math.isfinite(v):
            raise ValueError(f"parameter {name!r}: {field_name}={v!r} must be finite")
    low, high = (int(low), int(high)) if integer else (float(low), float(high))
    if not low < high:
        raise ValueError(f"parameter {name!r}: need low < high, got low={low!r}, high={high!r} "
                         f"(use search.Fixed for a single value)")
    if scale not in SCALES:
        raise ValueError(f"parameter {name!r}: scale={scale!r} is not allowed; "
                         f"choose one of {list(SCALES)}")
    if scale == "log" and low <= 0:
        raise ValueError(f"parameter {name!r}: scale='log' needs low > 0, got low={low!r}")
    if scale == "log1m" and integer:
        raise ValueError(f"parameter {name!r}: scale='log1m' is for search.Float (e.g. Adam's "
                         f"beta1, beta2); an Int takes 'linear' or 'log'")
    if scale == "log1m" and high >= 1:
        raise ValueError(f"parameter {name!r}: scale='log1m' (uniform in log(1 - x)) needs "
                         f"high < 1, got high={high!r}")
    return low, high


class Float(_Parameter):
    r"""A real hyperparameter in ``[low, high]``.

    From a unit-cube coordinate :math:`u \in [0, 1)`: ``scale="linear"`` gives
    :math:`low + u\,(high - low)`; ``scale="log"`` gives
    :math:`low \cdot (high/low)^u` (uniform in :math:`\log`, as the playbook
    searches learning rates); ``scale="log1m"`` gives
    :math:`1 - (1 - low)\,\big((1 - high)/(1 - low)\big)^u`, uniform in
    :math:`\log(1 - x)` (needs ``high < 1``). That is the scale for Adam's
    :math:`\beta_1, \beta_2`: what matters is the averaging horizon
    :math:`1/(1 - \beta)`, so 0.9, 0.99 and 0.999 are equally far apart.
    """

    kind: ClassVar[str] = "float"
    _fields: ClassVar[tuple[str, ...]] = ("low", "high", "scale")

    def __init__(self, low: float, high: float, scale: str = "linear", *,
                 role: str = "nuisance", when: Condition | None = None) -> None:
        self._init(low=low, high=high, scale=scale, role=role, when=when)

    def _checked(self, name: str) -> "Float":
        low, high = _check_bounds(name, self.low, self.high, self.scale, integer=False)
        return super()._checked(name)._replace(low=low, high=high)

    def _from_unit(self, u: np.ndarray) -> list:
        if self.scale == "log":
            x = self.low * (self.high / self.low) ** u
        elif self.scale == "log1m":
            x = 1.0 - (1.0 - self.low) * ((1.0 - self.high) / (1.0 - self.low)) ** u
        else:
            x = self.low + u * (self.high - self.low)
        return np.clip(x, self.low, self.high).tolist()  # clip: rounding at the top end

    def _to_unit(self, x: float) -> float:
        """The inverse of ``_from_unit``: the coordinate that maps to ``x``."""
        if self.scale == "log":
            u = math.log(x / self.low) / math.log(self.high / self.low)
        elif self.scale == "log1m":
            u = math.log((1.0 - x) / (1.0 - self.low)) / math.log((1.0 - self.high)
                                                                   / (1.0 - self.low))
        else:
            u = (x - self.low) / (self.high - self.low)
        return min(max(u, 0.0), _BELOW_ONE)  # x = high maps to the last float below 1

    def _grid(self, m: int) -> list:
        if m == 1:
            return self._from_unit(np.array([0.5]))
        x = self._from_unit(np.linspace(0.0, 1.0, m))
        x[0], x[-1] = self.low, self.high  # exact end points
        return x

    def _check_value(self, where: str, value: Any) -> float:
        value = _plain(value)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{where}={value!r} must be a real number in [{self.low}, {self.high}]")
        if not (math.isfinite(value) and self.low <= value <= self.high):
            raise ValueError(f"{where}={value!r} is out of range [{self.low}, {self.high}]")
        return float(value)


class Int(_Parameter):
    r"""An integer hyperparameter in ``[low, high]`` (both included).

    Every integer gets an equal share of the unit interval, so the ends are not
    under-sampled as with rounding: ``scale="linear"`` gives
    :math:`low + \lfloor u\,(high - low + 1) \rfloor`; ``scale="log"`` gives
    :math:`\lfloor low \cdot ((high + 1)/low)^u \rfloor`, i.e. log-uniform on
    :math:`[low, high + 1)`, floored (needs ``low >= 1``).
    """

    kind: ClassVar[str] = "int"
    _fields: ClassVar[tuple[str, ...]] = ("low", "high", "scale")

    def __init__(self, low: int, high: int, scale: str = "linear", *,
                 role: str = "nuisance", when: Condition | None = None) -> None:
        self._init(low=low, high=high, scale=scale, role=role, when=when)

    def _checked(self, name: str) -> "Int":
        low, high = _check_bounds(name, self.low, self.high, self.scale, integer=True)
        return super()._checked(name)._replace(low=low, high=high)

    def _from_unit(self, u: np.ndarray) -> list:
        if self.scale == "log":
            x = np.floor(self.low * ((self.high + 1) / self.low) ** u)
        else:
            x = self.low + np.floor(u * (self.high - self.low + 1))
        return np.clip(x, self.low, self.high).astype(np.int64).tolist()

    def _to_unit(self, k: int) -> float:
        """The centre of the interval of coordinates that ``_from_unit`` maps to ``k``."""
        if self.scale == "log":
            span = math.log((self.high + 1) / self.low)
            return 0.5 * (math.log(k / self.low) + math.log((k + 1) / self.low)) / span
        return (k - self.low + 0.5) / (self.high - self.low + 1)

    def _grid(self, m: int) -> list:
        if m == 1:
            u = np.array([0.5])
        else:
            u = np.linspace(0.0, 1.0, m)
        if self.scale == "log":
            x = self.low * (self.high / self.low) ** u
        else:
            x = self.low + u * (self.high - self.low)
        return sorted({int(v) for v in np.clip(np.round(x), self.low, self.high)})

    def _check_value(self, where: str, value: Any) -> int:
        value = _plain(value)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{where}={value!r} must be an integer in [{self.low}, {self.high}]")
        if not self.low <= value <= self.high:
            raise ValueError(f"{where}={value!r} is out of range [{self.low}, {self.high}]")
        return int(value)


class _Finite(_Parameter):
    """A parameter with a finite list of values, indexed by :math:`\\lfloor u K \\rfloor`."""

    _fields: ClassVar[tuple[str, ...]] = ("values",)
    _numeric: ClassVar[bool] = False

    def __init__(self, values: Sequence, *, role: str = "nuisance",
                 when: Condition | None = None) -> None:
        self._init(values=values, role=role, when=when)

    def _checked(self, name: str) -> "_Finite":
        values = _scalar_list(f"parameter {name!r}", self.values, numeric=self._numeric)
        if self._numeric:
            values = tuple(sorted(values))
        return super()._checked(name)._replace(values=values)

    def _values(self) -> tuple:
        return self.values

    def _from_unit(self, u: np.ndarray) -> list:
        k = len(self.values)
        index = np.minimum(np.floor(u * k).astype(np.int64), k - 1)
        return [self.values[i] for i in index.tolist()]

    def _to_unit(self, value: Any) -> float:
        """The centre of value i's share of the unit interval, :math:`(i + 1/2)/K`."""
        return (_find(self.values, value) + 0.5) / len(self.values)

    def _grid(self, m: int) -> list:
        return list(self.values)

    def _check_value(self, where: str, value: Any) -> Any:
        i = _find(self.values, _plain(value))
        if i is None:
            raise ValueError(f"{where}={value!r} is not allowed; choose one of {list(self.values)}")
        return self.values[i]


class Discrete(_Finite):
    r"""An ordered set of numbers, e.g. batch sizes ``[32, 64, 128]`` (stored sorted).

    Value :math:`\lfloor u K \rfloor` of the K values, so each gets an equal
    share of the unit interval.
    """

    kind: ClassVar[str] = "discrete"
    _numeric: ClassVar[bool] = True


class Choice(_Finite):
    r"""An unordered categorical hyperparameter, e.g. ``["nesterov", "adam"]``.

    Values are strings, bools, finite numbers or None (None cannot be written to
    TOML); value :math:`\lfloor u K \rfloor` of the K values.
    """

    kind: ClassVar[str] = "choice"


class Fixed(_Parameter):
    """A fixed hyperparameter: the same ``value`` in every trial where it is active."""

    kind: ClassVar[str] = "fixed"
    _fields: ClassVar[tuple[str, ...]] = ("value",)

    def __init__(self, value: Scalar, *, role: str = "fixed",
                 when: Condition | None = None) -> None:
        self._init(value=value, role=role, when=when)

    def _checked(self, name: str) -> "Fixed":
        if self.role != "fixed":
            raise ValueError(f"parameter {name!r}: a search.Fixed parameter has role 'fixed', "
                             f"got role={self.role!r}")
        (value,) = _scalar_list(f"parameter {name!r}", [self.value], numeric=False)
        return self._replace(value=value, when=_checked_when(name, self.when))

    def _values(self) -> tuple:
        return (self.value,)

    def _check_value(self, where: str, value: Any) -> Any:
        if not _same_scalar(_plain(value), self.value):
            raise ValueError(f"{where}={value!r} but the fixed value is {self.value!r}")
        return self.value


_KINDS: dict[str, type[_Parameter]] = {c.kind: c for c in (Float, Int, Discrete, Choice, Fixed)}
_ARGS = {"float": ("low", "high"), "int": ("low", "high"), "discrete": ("values",),
         "choice": ("values",), "fixed": ("value",)}
_OPTIONAL = {"float": ("scale", "role", "when"), "int": ("scale", "role", "when"),
             "discrete": ("role", "when"), "choice": ("role", "when"), "fixed": ("role", "when")}


# --------------------------------------------------------------------------
# The space
# --------------------------------------------------------------------------


#: The largest float64 below 1: from_unit_cube takes coordinates in [0, 1).
_BELOW_ONE = float(np.nextafter(1.0, 0.0))


def _config_key(name: str) -> str:
    """The key a parameter writes into a trial config: the last ``/`` part of its name."""
    return name.rsplit("/", 1)[-1]


class SearchSpace:
    """A validated set of named hyperparameters with roles and conditions.

    Build it from keyword arguments, a dict (for namespaced names such as
    ``"adam/lr"``), or both::

        SearchSpace(optimizer=Choice(["nesterov", "adam"], role="scientific"),
                    lr=Float(1e-4, 1e-1, scale="log"),
                    gamma=Float(0.8, 0.99, when={"optimizer": "nesterov"}),
                    weight_decay=Fixed(0.0))

    The samplers map point ``u`` of the unit cube to a config: coordinate ``j``
    belongs to ``space.dimensions[j]`` — the searched (non-fixed) parameters,
    scientific ones first (the first Halton coordinates are the best
    stratified), then nuisance ones, each in the order given. Every parameter in
    the union of conditional branches has its own coordinate; inactive ones are
    dropped from the config after mapping, so every coordinate keeps its
    low-discrepancy property.
    """

    def __init__(self, params: Mapping[str, _Parameter] | None = None, /,
                 **kwargs: _Parameter) -> None:
        if params is not None and not isinstance(params, Mapping):
            raise TypeError(f"SearchSpace takes a dict of parameters and/or keyword arguments, "
                            f"got {type(params).__name__}")
        given = list((params or {}).items())
        for name in kwargs:
            if params is not None and name in params:
                raise ValueError(f"parameter {name!r} is given twice")
        given += list(kwargs.items())
        self._params: dict[str, _Parameter] = {}
        for name, param in given:
            _check_name(name)
            if not isinstance(param, _Parameter):
                raise TypeError(f"parameter {name!r} must be a search.Float, Int, Discrete, "
                                f"Choice or Fixed, got {param!r}")
            self._params[name] = param._checked(name)
        self._check_conditions()
        self._order = self._topological_order()
        self._effective: dict[str, dict[str, tuple]] = {}
        for name in self._order:  # parents first, so their entries exist
            self._effective[name] = self._effective_conditions(name)
        self._check_keys()
        searched = [n for n, p in self._params.items() if not isinstance(p, Fixed)]
        self._dimensions = tuple([n for n in searched if self._params[n].role == "scientific"]
                                 + [n for n in searched if self._params[n].role == "nuisance"])

    # -- construction checks --------------------------------------------------
    def _check_conditions(self) -> None:
        for name, param in self._params.items():
            for parent, values in (param.when or {}).items():
                if parent == name:
                    raise ValueError(f"parameter {name!r}: when refers to itself")
                if parent not in self._params:
                    raise ValueError(f"parameter {name!r}: when refers to unknown parameter "
                                     f"{parent!r}; parameters are {list(self._params)}")
                allowed = self._params[parent]._values()
                if allowed is None:
                    raise ValueError(f"parameter {name!r}: when refers to {parent!r}, a "
                                     f"{type(self._params[parent]).__name__}; a condition's "
                                     f"parent must be a Choice, Discrete or Fixed")
                for v in values:
                    if _find(allowed, v) is None:
                        raise ValueError(f"parameter {name!r}: when[{parent!r}] has {v!r}, which "
                                         f"is not a value of {parent!r} (values: {list(allowed)})")

    def _topological_order(self) -> list[str]:
        """Parents before children, otherwise the order given; a cycle is an error."""
        order: list[str] = []
        state: dict[str, str] = {}

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == "done":
                return
            if state.get(name) == "visiting":
                cycle = path[path.index(name):] + [name]
                raise ValueError(f"parameter {name!r}: conditions form a cycle: "
                                 f"{' -> '.join(cycle)}")
            state[name] = "visiting"
            for parent in self._params[name].when or {}:
                visit(parent, path + [name])
            state[name] = "done"
            order.append(name)

        for name in self._params:
            visit(name, [])
        return order

    def _effective_conditions(self, name: str) -> dict[str, tuple]:
        """All conditions, own and inherited, that must hold for ``name`` to be active."""
        out: dict[str, tuple] = {}
        for parent, values in (self._params[name].when or {}).items():
            for p, vs in list(self._effective[parent].items()) + [(parent, values)]:
                if p in out:
                    vs = tuple(v for v in out[p] if _find(vs, v) is not None)
                    if not vs:
                        raise ValueError(f"parameter {name!r} can never be active: its "
                                         f"conditions on {p!r} (own or inherited) contradict")
                out[p] = vs
        return out

    def _check_keys(self) -> None:
        """Parameters sharing a config key must never be active in the same trial."""
        by_key: dict[str, list[str]] = {}
        for name in self._params:
            by_key.setdefault(_config_key(name), []).append(name)
        for key, names in by_key.items():
            for i, a in enumerate(names):
                for b in names[i + 1:]:
                    ea, eb = self._effective[a], self._effective[b]
                    exclusive = any(
                        p in eb and not any(_find(eb[p], v) is not None for v in ea[p])
                        for p in ea)
                    if not exclusive:
                        raise ValueError(
                            f"parameters {a!r} and {b!r} both write config key {key!r} and can be "
                            f"active in the same trial; make them conditional on the same parent "
                            f"with disjoint values, e.g. when={{'optimizer': 'nesterov'}} and "
                            f"when={{'optimizer': 'adam'}}")

    # -- read access -----------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """Parameter names in the order given."""
        return tuple(self._params)

    @property
    def dimensions(self) -> tuple[str, ...]:
        """The searched parameters, one per unit-cube coordinate (see the class docstring)."""
        return self._dimensions

    @property
    def num_dimensions(self) -> int:
        """The dimension of the unit cube the space is drawn from (Fixed parameters take none)."""
        return len(self._dimensions)

    def __getitem__(self, name: str) -> _Parameter:
        if name not in self._params:
            raise KeyError(f"no parameter {name!r}; parameters are {list(self._params)}")
        return self._params[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __contains__(self, name: object) -> bool:
        return name in self._params

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SearchSpace):
            return NotImplemented
        return list(self._params.items()) == list(other._params.items())

    def __repr__(self) -> str:
        inner = ",\n    ".join(f"{n!r}: {p!r}" for n, p in self._params.items())
        return f"SearchSpace({{\n    {inner}}})"

    def config_key(self, name: str) -> str:
        """The key parameter ``name`` writes into a config (``"adam/lr"`` -> ``"lr"``)."""
        self[name]
        return _config_key(name)

    def roles(self) -> dict[str, str]:
        """``{name: "scientific" | "nuisance" | "fixed"}`` in the order given."""
        return {n: p.role for n, p in self._params.items()}

    def scientific(self) -> tuple[str, ...]:
        """Names of the scientific parameters."""
        return tuple(n for n, p in self._params.items() if p.role == "scientific")

    def nuisance(self) -> tuple[str, ...]:
        """Names of the nuisance parameters."""
        return tuple(n for n, p in self._params.items() if p.role == "nuisance")

    def fixed(self) -> tuple[str, ...]:
        """Names of the fixed parameters."""
        return tuple(n for n, p in self._params.items() if p.role == "fixed")

    # -- configs ---------------------------------------------------------------
    def _is_active(self, name: str, values: Mapping[str, Any]) -> bool:
        """Given the values of the parameters already found active (by name)."""
        return all(parent in values and _find(allowed, values[parent]) is not None
                   for parent, allowed in (self._params[name].when or {}).items())

    def _to_config(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {_config_key(n): values[n] for n in self._params if n in values}

    def from_unit_cube(self, u: np.ndarray) -> list[dict[str, Any]]:
        """Map points of [0, 1)^num_dimensions (rows of ``u``) to trial configs.

        Column j is the coordinate of ``self.dimensions[j]``. Inactive
        parameters are dropped from each config.
        """
        u = np.asarray(u, dtype=np.float64)
        if u.ndim != 2 or u.shape[1] != self.num_dimensions:
            raise ValueError(f"u must have shape (n, {self.num_dimensions}), got {u.shape}")
        if u.size and not (np.all(u >= 0.0) and np.all(u < 1.0)):
            raise ValueError("u must lie in [0, 1)")
        columns = {name: self._params[name]._from_unit(u[:, j])
                   for j, name in enumerate(self._dimensions)}
        configs = []
        for i in range(u.shape[0]):
            values: dict[str, Any] = {}
            for name in self._order:
                if self._is_active(name, values):
                    param = self._params[name]
                    values[name] = param.value if isinstance(param, Fixed) else columns[name][i]
            configs.append(self._to_config(values))
        return configs

    def to_unit_cube(self, config: Mapping[str, Any]) -> np.ndarray:
        """The point of [0, 1)^num_dimensions that ``from_unit_cube`` maps to ``config``.

        The inverse of :meth:`from_unit_cube`: coordinate j belongs to
        ``self.dimensions[j]``. A Float's coordinate inverts its scale (the
        value ``high`` maps to the last float below 1); an Int, Discrete or
        Choice value maps to the centre of its share of the unit interval.
        ``config`` is validated first (see :meth:`validate_config`). A
        parameter that is inactive in ``config`` has no coordinate: its entry
        is NaN, and any value in [0, 1) there maps back to the same config::

            u = space.to_unit_cube(config)
            space.from_unit_cube(np.nan_to_num(u, nan=0.5)[None])[0]   # == config
                                                    # (Floats: to rounding, ~1e-15)
        """
        values = self._resolve(config)
        return np.array([self._params[name]._to_unit(values[name]) if name in values else np.nan
                         for name in self._dimensions], dtype=np.float64)

    def _resolve(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``config`` and return ``{name: value}`` of its active parameters."""
        if not isinstance(config, Mapping):
            raise TypeError(f"a config must be a dict, got {type(config).__name__}")
        values: dict[str, Any] = {}
        for name in self._order:
            if not self._is_active(name, values):
                continue
            key = _config_key(name)
            if key not in config:
                raise ValueError(f"config is missing {key!r} (parameter {name!r}, which is active"
                                 f"{self._why(name, values)})")
            where = f"config[{key!r}]" + ("" if key == name else f" (parameter {name!r})")
            values[name] = self._params[name]._check_value(where, config[key])
        used = {_config_key(n) for n in values}
        for key in config:
            if key in used:
                continue
            inactive = [n for n in self._params if _config_key(n) == key]
            if inactive:
                name = inactive[0]
                raise ValueError(f"config has {key!r} but parameter {name!r} is inactive: it "
                                 f"needs {self._params[name].when}")
            raise ValueError(f"config has unknown key {key!r}; the space's keys are "
                             f"{sorted({_config_key(n) for n in self._params})}")
        return {n: values[n] for n in self._params if n in values}

    def _why(self, name: str, values: Mapping[str, Any]) -> str:
        when = self._params[name].when
        return "" if not when else " because " + ", ".join(f"{p}={values[p]!r}" for p in when)

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check a trial config against the space; return it as a plain dict.

        The config must hold exactly the active parameters (by config key), each
        within its domain; numpy scalars become Python scalars and a value of a
        Discrete/Choice becomes the space's own value (``64.0`` -> ``64``).
        Raises ValueError/TypeError naming the key otherwise.
        """
        return self._to_config(self._resolve(config))

    def active_parameters(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """``{parameter name: value}`` of the parameters active in ``config``.

        This is how analysis tells the ``lr`` of an Adam trial (parameter
        ``"adam/lr"``) from the ``lr`` of a Nesterov trial (``"nesterov/lr"``).
        """
        return self._resolve(config)

    # -- plain dict / TOML table ------------------------------------------------
    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{name: {"type": ..., fields..., "role": ..., ["when": {...}]}}``; see from_dict."""
        return {name: p._to_dict() for name, p in self._params.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Mapping[str, Any]]) -> "SearchSpace":
        """Build a space from a plain dict / TOML table (the shape ``to_dict`` writes).

        Each entry has ``type`` (float, int, discrete, choice, fixed) and the
        kind's fields: ``low``/``high``/``scale`` (float, int), ``values``
        (discrete, choice), ``value`` (fixed); optional ``role`` and ``when``.
        Unknown fields are errors.
        """
        if not isinstance(d, Mapping):
            raise TypeError(f"a search space table must be a dict, got {type(d).__name__}")
        params: dict[str, _Parameter] = {}
        for name, entry in d.items():
            if not isinstance(entry, Mapping):
                raise TypeError(f"parameter {name!r}: expected a table with a 'type', "
                                f"got {entry!r}")
            kind = entry.get("type")
            if kind not in _KINDS:
                raise ValueError(f"parameter {name!r}: type={kind!r} is not allowed; "
                                 f"choose one of {list(_KINDS)}")
            fields = {k: v for k, v in entry.items() if k != "type"}
            unknown = set(fields) - set(_ARGS[kind]) - set(_OPTIONAL[kind])
            if unknown:
                raise ValueError(f"parameter {name!r}: unknown field(s) {sorted(unknown)} for "
                                 f"type {kind!r}; allowed {list(_ARGS[kind] + _OPTIONAL[kind])}")
            missing = [k for k in _ARGS[kind] if k not in fields]
            if missing:
                raise ValueError(f"parameter {name!r}: type {kind!r} needs field(s) {missing}")
            params[name] = _KINDS[kind](**fields)
        return cls(params)


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name or any(not part for part in name.split("/")):
        raise ValueError(f"parameter name {name!r} must be a non-empty string; '/' separates "
                         f"non-empty parts, e.g. 'adam/lr'")
