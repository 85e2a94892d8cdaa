"""The stages: plain functions over artifact URIs, one module each, with the row that declares it.

One folder per study: :mod:`.synth` (prompts, generation, shard writing), :mod:`.zeroshot` (filter,
features and their cache, leakage, tune, evaluate, export), :mod:`.fewshot` (split, guided generation, real
filter, CT w. init / w. Syn, evaluate) and :mod:`.pretraining` (pre-training, fine-tuning, scratch
baselines, detection). Each module ends with ``STAGE = StageSpec(...)`` (:mod:`synk8s.stagetable.spec`);
:mod:`synk8s.stages.table` lists the rows in order. :mod:`synk8s.stages.export` finds what ``synk8s export``
copies out of a run (the zero-shot classifier) or writes from it (a pre-training run's backbone).
"""
