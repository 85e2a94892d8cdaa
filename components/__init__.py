"""KFP components of the synk8s stages, installed as ``synk8s.components``.

``stages``: one lightweight component per stage (``make_components(image, cpu_image)``);
``run_stage``: the body the stage components share; ``params``: pipeline parameters <->
experiment config; ``metrics`` and ``report``: what the components report. Module tops import
only the standard library and kfp.
"""
