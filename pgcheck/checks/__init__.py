"""The checks, one module per check, each split into a learner side (``measure``) and a
reference side (``judge``) by :mod:`.base`; :mod:`.registry` lists them all explicitly."""
