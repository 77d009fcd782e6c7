"""Naming what is wrong: the mistakes (:mod:`.mistakes`), reference estimators that make them
(:mod:`.estimators`), matching a learner's gradient against them (:mod:`.matching`), and the
ordered verdict rules of the pseudo-loss check (:mod:`.verdict`)."""
