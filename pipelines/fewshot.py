"""The few-shot study (paper section 3.2) as a Kubeflow pipeline: one shot count, or a sweep over them.

    plan -> prompts -> generate_shards -> generate x n (ParallelFor, GPU) -> collect    (B, RF)
         -> filter (CF) -> features
         -> split -> [realfilter (RF)] -> fewshot_tune -> fewshot_evaluate (report.json), fewshot_export

    plan -> prompts                                                                       (RG)
         -> split -> guided_shards -> guided x n (ParallelFor, GPU) -> collect_guided
         -> filter_guided (CF under fewshot.rg_filter) -> features_guided -> fewshot_tune -> fewshot_evaluate, fewshot_export

Which branch runs is chosen **when the pipeline is compiled**, from ``fewshot.strategy`` of the
config (``synk8s submit`` compiles with the run's config, so ``--set fewshot.strategy=B`` picks B):
the three strategies read different folders, and the stage table picks them by that field. A run
whose resolved config names another strategy than the compiled one (an override edited in the
Kubeflow UI) fails at ``fewshot_tune`` with one line saying so, instead of tuning on the wrong data.

``fewshot`` runs one shot count, ``fewshot.shots_per_class`` (``--shots``). ``fewshot_sweep`` runs
every M of ``fewshot.shots`` in one submission, for Figure 1's curve: the stages that do not depend
on M (prompts, and for B and RF generation, CF and features) run once; each M gets its own branch
(``shots_config`` -> split -> ... -> fewshot_evaluate, display names ending in ``M=<m>``), all
sharing one split seed (the splits nest). The branches are unrolled when compiling, one per M, not
a ``dsl.ParallelFor``: RG's branch holds a sharded ParallelFor with ``dsl.Collected`` of its own,
which KFP does not gather from inside another loop, and kfp.local hands tasks inside a loop the loop
item in place of upstream outputs. Branches have no edges between them, so a cluster runs them at
once. A final ``sweep_report`` task writes ``fewshot-sweep-<digest>/sweep.json`` with every M's
top-1 of CT w. init and CT w. Syn and the path of each M's report.

GPU tasks, the Secret and ConfigMap, retries of the sharded tasks and caching are those of every
pipeline (:mod:`synk8s.pipelines.wiring`).
"""

from typing import Any

from kfp import dsl
from synk8s.components.sweep import shots_config, sweep_report
from synk8s.pipelines.wiring import Wiring, planned_pipeline

from synk8s.config import ExperimentConfig
from synk8s.stages.table import TABLE

PIPELINE_NAME = "synk8s-fewshot"
SWEEP_PIPELINE_NAME = "synk8s-fewshot-sweep"
#: typed pipeline parameters (see synk8s.flags.PARAMETERS); the strategy is fixed at compile time
PARAMETERS = (
    "dataset", "images_per_class", "num_shards", "generator", "seed", "store_root",
    "shots", "fewshot_schedule", "fewshot_epochs",
)
#: a sweep's: the shot counts are its branches, fixed at compile time (fewshot.shots)
SWEEP_PARAMETERS = tuple(name for name in PARAMETERS if name != "shots")

SHOTS = "fewshot.shots_per_class"  # the stages whose folders depend on it run once per M


def stages_of(cfg: ExperimentConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The stages ``fewshot_evaluate`` and ``fewshot_export`` need under ``cfg``'s strategy, in table order:
    those that do not depend on M (run once), then those of one M (a branch each in a sweep)."""
    stages = TABLE.closure(("fewshot_evaluate", "fewshot_export"), cfg)
    per_shot = tuple(name for name in stages if SHOTS in TABLE.fields(name, cfg))
    return tuple(name for name in stages if name not in per_shot), per_shot


def with_shots(cfg: ExperimentConfig, shots: int) -> ExperimentConfig:
    """``cfg`` with ``fewshot.shots_per_class`` = ``shots``."""
    return cfg.model_copy(update={"fewshot": cfg.fewshot.model_copy(update={"shots_per_class": shots})})


def build_pipeline(
    cfg: ExperimentConfig,
    *,
    retry: bool = True,
    parallelism: int | None = None,
    threads: int | None = None,
    sweep: bool = False,
):
    """The few-shot pipeline function for ``cfg``.

    Args:
        cfg: resolved config; it sets the parameter defaults, the cluster settings and, fixed at
            compile time, ``fewshot.strategy`` (and for a sweep ``fewshot.shots``).
        retry: retry a failed shard task (see :class:`~synk8s.pipelines.wiring.Wiring`).
        parallelism: shard tasks of one sharded stage that run at once; None: all of them.
        threads: ``OMP_NUM_THREADS`` of every task (a local run's share of the cores); None: unset.
        sweep: one branch per M of ``fewshot.shots`` and a ``sweep_report`` task; else one run of
            ``fewshot.shots_per_class``.

    Returns:
        A ``@dsl.pipeline`` function whose output is the URI of the run's ``report.json`` (a sweep:
        of its ``sweep.json``).
    """
    shared, per_shot = stages_of(cfg)
    shot_counts = tuple(cfg.fewshot.shots) if sweep else (cfg.fewshot.shots_per_class,)
    light = {"base_image": cfg.cluster.cpu_image, "install_kfp_package": False}
    shots_component = dsl.component(shots_config, **light)
    sweep_component = dsl.component(sweep_report, **light)

    @planned_pipeline(
        cfg,
        parameters=SWEEP_PARAMETERS if sweep else PARAMETERS,
        name=SWEEP_PIPELINE_NAME if sweep else PIPELINE_NAME,
        description=f"Few-shot CLIP classifier tuning with synthetic data (strategy {cfg.fewshot.strategy}, "
        f"{'M in ' + str(list(shot_counts)) if sweep else 'one M'}): CT w. init vs CT w. Syn on a real test set.",
        retry=retry,
        parallelism=parallelism,
        threads=threads,
    )
    def fewshot(wire: Wiring) -> Any:
        for stage in shared:
            wire.add(stage)
        evaluations = []
        for shots in shot_counts:
            branch = wire
            if sweep:
                task = wire.call(
                    shots_component, f"shots_config M={shots}", store=False, config_json=wire.config_json, shots=shots
                )
                branch = wire.branch(with_shots(cfg, shots), task.output, f"M={shots}")
            for stage in per_shot:
                branch.add(stage)
            evaluations.append(branch.tasks["fewshot_evaluate"])
        if not sweep:
            return evaluations[0].outputs["Output"]  # the run report's URI
        gather = wire.call(
            sweep_component, "sweep_report", after=tuple(evaluations), config_json=wire.config_json, run_dir=wire.run_dir
        )
        return gather.output

    return fewshot
