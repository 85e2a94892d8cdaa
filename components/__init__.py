"""KFP components of the synk8s stages, installed as ``synk8s.components``.

``stages``: the components derived from the stage table (``make_components(cfg)``) plus ``plan``
(``plan``: pipeline parameters -> config and run folder); ``run_stage``: the bodies they share;
``params``: pipeline parameters <-> experiment config; ``metrics``: what a component reports.
Components are adapters: they call the core (``synk8s.stages.table``) and hold no logic of their
own. Module tops import only the standard library and kfp.
"""
