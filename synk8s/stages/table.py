"""The stage table of synk8s: every stage's row, in the order the studies run them.

    from synk8s.stages.table import TABLE, run_dir, stage_dir
    run = run_dir(cfg)                            # <store.root>/runs/<dataset>-<images digest>
    stage_dir(run, "filter", cfg)                 # <run>/filter-<digest of what the filter depends on>
    TABLE.execute("filter", cfg, run)             # reads its inputs' folders, writes its own

Each row lives at the bottom of its stage module (``STAGE = StageSpec(...)``); adding a stage means
writing its module and adding its row here, after the rows it reads. The engine that derives the
layout and runs the rows is :mod:`synk8s.stagetable`.
"""

from __future__ import annotations

from synk8s.stages.fewshot import evaluate as fewshot_evaluate
from synk8s.stages.fewshot import export as fewshot_export
from synk8s.stages.fewshot import guided, realfilter, split
from synk8s.stages.fewshot import tune as fewshot_tune
from synk8s.stages.pretraining import detect, finetune, pretrain, scratch, scratch_real
from synk8s.stages.synth import generate, prompts
from synk8s.stages.zeroshot import eval_features, evaluate, export, features, leakage, tune
from synk8s.stages.zeroshot import filter as filter_stage
from synk8s.stagetable import StageTable

RUN_KEY = "generate"  # the run folder is named by the dataset and the digest of this stage's fields

TABLE = StageTable(
    (prompts.STAGE, generate.STAGE, filter_stage.STAGE, eval_features.STAGE, features.STAGE, leakage.STAGE, tune.STAGE, evaluate.STAGE,
     export.STAGE,  # the tuned classifier as a folder (KServe, ONNX)
     # few-shot (docs/fewshot.md): the split, RG images and their CF and features, RF, CT w. init / w. Syn
     split.STAGE, guided.STAGE, guided.FILTER_STAGE, guided.FEATURES_STAGE, realfilter.STAGE,
     fewshot_tune.STAGE, fewshot_evaluate.STAGE, fewshot_export.STAGE,
     # pre-training and transfer (docs/pretrain.md, docs/detection.md)
     pretrain.STAGE, finetune.STAGE, scratch.STAGE, detect.STAGE, scratch_real.STAGE),
    run_key=RUN_KEY,
)

get = TABLE.get
default_run_id = TABLE.default_run_id
run_dir = TABLE.run_dir
stage_dir = TABLE.stage_dir
