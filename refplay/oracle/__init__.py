"""refplay.oracle: check any optimizer against the playbook's update rules.

* :func:`trajectory` — the parameters after every step of a playbook rule on a
  deterministic problem (:mod:`refplay.oracle.problems`).
* :func:`compare` — run your own step function ``(params, grads, lr) ->
  params`` beside the rule; where it departs (update, leaf, step size) and,
  when it fails, which known form it computes instead
  (:mod:`refplay.oracle.diagnose`). :func:`assert_matches` is the pytest form.
* :mod:`refplay.oracle.neighbours` — the rules' neighbour forms (torch's Adam,
  torch's RMSProp, Dozat's NAdam, common mistakes), selectable as references
  with ``form=``.
* :mod:`refplay.oracle.golden` — the trajectories as versioned JSON + ``.npz``
  files for code in other languages (``refplay oracle export --out DIR``);
  :mod:`refplay.oracle.verify` checks trajectories written back in the same
  layout (``refplay oracle verify GOLDEN_DIR YOUR_DIR``).
* :mod:`refplay.oracle.frameworks` — which torch / optax / Keras configuration
  computes each rule, checked step by step (``refplay oracle check torch``);
  the table with measured numbers is ``docs/oracle.md``.

Frameworks are imported only when a framework check runs.
"""

from refplay.oracle import diagnose, golden, neighbours, problems
from refplay.oracle.compare import (DEFAULT_TOL, Comparison, assert_matches, compare,
                                    compare_trajectories)
from refplay.oracle.problems import Problem
from refplay.oracle.trajectory import Trajectory, lr_values, standard_schedule, trajectory

__all__ = ["Problem", "Trajectory", "Comparison", "DEFAULT_TOL", "compare", "assert_matches",
           "compare_trajectories", "trajectory", "standard_schedule", "lr_values", "golden",
           "problems", "neighbours", "diagnose"]
