"""The stages: plain functions over artifact URIs, one module each, with the row that declares it.

Each module ends with ``STAGE = StageSpec(...)`` (:mod:`synk8s.stages.spec`); :mod:`synk8s.stages.table`
lists the rows and derives the run layout, the inputs of each stage and how to run it.
"""
