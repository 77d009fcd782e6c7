"""The smaller checks of a learner's policy code, in one namespace.

* :mod:`pgcheck.log_prob_check` — ``check_log_prob``
* :mod:`pgcheck.score_function_check` — ``check_score_function``
* :mod:`pgcheck.score_estimator_check` — ``check_score_estimator``

with the shared machinery in :mod:`pgcheck.checking`.
"""

from pgcheck.checking import *  # noqa: F403
from pgcheck.log_prob_check import *  # noqa: F403
from pgcheck.log_prob_check import _log_prob_candidates, _ref_log_prob  # noqa: F401
from pgcheck.score_estimator_check import *  # noqa: F403
from pgcheck.score_estimator_check import _sample  # noqa: F401
from pgcheck.score_function_check import *  # noqa: F403
