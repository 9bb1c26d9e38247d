"""refplay.oracle: check any optimizer against the playbook's update rules.

* :func:`trajectory` — the parameters after every step of a playbook rule on a
  deterministic problem (:mod:`refplay.oracle.problems`).
* :func:`compare` — run your own step function ``(params, grads, lr) ->
  params`` beside the rule; max |Δθ| per step and the first step over tolerance.
* :mod:`refplay.oracle.golden` — the trajectories as versioned JSON + ``.npz``
  files for code in other languages (``refplay oracle export --out DIR``).
* :mod:`refplay.oracle.frameworks` — which torch / optax / Keras configuration
  computes each rule, checked step by step (``refplay oracle check torch``);
  the table with measured numbers is ``docs/oracle.md``.

Frameworks are imported only when a framework check runs.
"""

from refplay.oracle import golden, problems
from refplay.oracle.compare import DEFAULT_TOL, Comparison, compare
from refplay.oracle.problems import Problem
from refplay.oracle.trajectory import Trajectory, lr_values, standard_schedule, trajectory

__all__ = ["Problem", "Trajectory", "Comparison", "DEFAULT_TOL", "compare", "trajectory",
           "standard_schedule", "lr_values", "golden", "problems"]
