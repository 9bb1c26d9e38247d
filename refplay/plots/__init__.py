"""refplay.plots: the playbook's figures, drawn from what ``refplay.analysis`` returns.

============================  ==================================================
``axis_plot``                 Figure 1 / 7a: objective vs a hyperparameter
``isolation_plot``            Figure 2: best per value of a scientific hyperparameter
``best_of_n_plot``            Figure 3: best of N trials, box plots
``training_curves``           training and validation curves of the top trials
``grad_norm_plot``            Figure 9: gradient norms and clipping thresholds
``best_step_histogram``       where in training the best checkpoints fall
============================  ==================================================

The procedures' figures, one module per procedure (:mod:`refplay.procedures`):
``step_budget`` (training error to a perfect fit, steps to fit), ``batch_size``
(throughput, steps to a result, the fair comparison), ``variance`` (retrain
spreads), ``rounds`` (Round 1 vs Round 2, schedule families), ``noise``,
``trial_budget`` (Figure 3's boxes), ``instability`` (Figures 5-8) and
``clipping`` (Figure 9); ``style`` holds the visual language, PNG writing and
the caveat line under a figure.

Every function returns a ``matplotlib.figure.Figure`` (no pyplot state, no
``plt.show()``); save it with ``fig.savefig(path)``.
"""

from refplay.plots import (batch_size, clipping, instability, noise, rounds, step_budget, style,
                           trial_budget, variance)
from refplay.plots.axis import axis_plot
from refplay.plots.budget import best_of_n_plot
from refplay.plots.curves import best_step_histogram, grad_norm_plot, training_curves
from refplay.plots.isolation import isolation_plot

__all__ = ["axis_plot", "isolation_plot", "best_of_n_plot", "training_curves", "grad_norm_plot",
           "best_step_histogram", "batch_size", "clipping", "instability", "noise", "rounds",
           "step_budget", "style", "trial_budget", "variance"]
