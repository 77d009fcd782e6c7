"""The exact expectation of a learner's gradient: the inputs a loss can ask for
(:mod:`.vocabulary`), the expectation engine (:mod:`.expectation`), and cached reference
quantities (:mod:`.references`)."""
