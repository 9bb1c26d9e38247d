"""refplay.analysis: numbers and decisions from recorded studies (milliseconds, no training).

The playbook's "Extracting insight from experimental results", one small
module per question:

==========================  =========================================================
``frame``                   :func:`load` a study into a :class:`TrialsFrame`
``imports``                 :func:`from_optuna`, :func:`from_csv`, :func:`from_records`:
                            studies made elsewhere, as frames
``selection``               :func:`best` trial per scientific value, post hoc
``boundaries``              :func:`boundary_check`: is the search space big enough?
``isolation``               :func:`isolation`: best per value of a hyperparameter
``budget``                  :func:`best_of_n` (per value: :func:`best_of_n_per_value`):
                            have we sampled enough? (Figure 3)
``diagnostics``             :func:`curve_diagnostics`: what the training curves say
``instability``             :func:`detect_instability`: loss spikes from per-step losses
``steps``                   :func:`best_step_fractions`, :func:`infeasible_fraction`
                            (of the finished trials; crashed and pruned ones apart)
``uncertainty``             binomial SE, the spread of repeats, :func:`compare`
``lint``                    :func:`role_lint`: roles the playbook warns about
``importance``              :func:`importance`: range of the bucketed best per axis
``gradnorms``               :func:`grad_norm_summary`: clipping thresholds (Figure 9)
==========================  =========================================================

Everything here reads a store or in-memory results; nothing imports
``refplay.plots`` (plots draw what this package returns).
"""

from refplay.analysis.boundaries import (DECISIONS, BoundaryCheck, BoundaryReport, boundary_check,
                                         position)
from refplay.analysis.budget import (BestOfN, Quantiles, best_of_n, best_of_n_per_value, exact_cdf,
                                     exchangeable_caveat)
from refplay.analysis.diagnostics import FLAGS, Diagnostics, Flag, curve_diagnostics, spearman
from refplay.analysis.frame import (QUASI_RANDOM, TrialRow, TrialsFrame, from_results, load,
                                    value_label)
from refplay.analysis.gradnorms import GradNormSummary, grad_norm_summary
from refplay.analysis.importance import Importance, importance
from refplay.analysis.imports import from_csv, from_dataframe, from_optuna, from_records
from refplay.analysis.instability import InstabilityEvent, collapse_step, detect_instability
from refplay.analysis.isolation import Isolation, IsolationRow, bucket_edges, isolation
from refplay.analysis.lint import LintWarning, role_lint
from refplay.analysis.selection import Best, best, objective_of, ranked
from refplay.analysis.steps import (BestStepFractions, InfeasibleCount, best_step_fractions,
                                    infeasible_fraction)
from refplay.analysis.uncertainty import (Comparison, RepeatSpread, binomial_se, compare,
                                          metric_se, repeat_spread)

__all__ = [
    "TrialRow", "TrialsFrame", "load", "from_results", "value_label", "QUASI_RANDOM",
    "from_optuna", "from_csv", "from_dataframe", "from_records",
    "Best", "best", "ranked", "objective_of",
    "BoundaryCheck", "BoundaryReport", "boundary_check", "position", "DECISIONS",
    "Isolation", "IsolationRow", "isolation", "bucket_edges",
    "BestOfN", "Quantiles", "best_of_n", "best_of_n_per_value", "exchangeable_caveat", "exact_cdf",
    "Diagnostics", "Flag", "curve_diagnostics", "spearman", "FLAGS",
    "InstabilityEvent", "detect_instability", "collapse_step",
    "BestStepFractions", "best_step_fractions", "InfeasibleCount", "infeasible_fraction",
    "Comparison", "RepeatSpread", "binomial_se", "compare", "metric_se", "repeat_spread",
    "LintWarning", "role_lint",
    "Importance", "importance",
    "GradNormSummary", "grad_norm_summary",
]
