"""Pure presentation models: what a view shows, built from observations (no I/O, no rendering).

:mod:`runnerd.views.dashboard` is the model both the web dashboard (:mod:`runnerd.web.dashboard`)
and ``runnerd status`` (:mod:`runnerd.status`) present.
"""
