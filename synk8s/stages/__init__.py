"""The stages: plain functions over artifact URIs, one module each, with the row that declares it.

One folder per study: :mod:`.synth` (prompts, generation, shard writing), :mod:`.zeroshot` (filter,
features and their cache, leakage, tune, evaluate), :mod:`.fewshot` (split, guided generation, real
filter, CT w. init / w. Syn, evaluate) and :mod:`.pretraining` (pre-training, fine-tuning, scratch
baselines, detection). Each module ends with ``STAGE = StageSpec(...)`` (:mod:`synk8s.stagetable.spec`);
:mod:`synk8s.stages.table` lists the rows in order.
"""
