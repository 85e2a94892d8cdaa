"""The few-shot loop: batches per schedule, last-epoch or validation selection, learning from synthetic signal."""

import dataclasses
import math
from collections import Counter

import pytest
import torch

from synk8s import config
from synk8s.errors import UsageError
from synk8s.stages.fewshot import fit as fewshot_fit
from synk8s.stages.fewshot import fit_features as fewshot_features
from synk8s.stages.fewshot import tune as fewshot_tune
from synk8s.stages.fewshot.fit import Hyper, Source
from synk8s.stages.fewshot.split import FewShotSplit, Shot
from synk8s.stages.zeroshot.tune import top1

pytestmark = pytest.mark.timeout(60)

K, D = 5, 8
REAL, SYN = 1.0, 0.0  # marker column of the inputs


class Recorder(torch.nn.Module):
    """A linear head that records, for every training forward pass, which items it was fed."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(D, K)
        self.fed: list[list[tuple[float, int]]] = []

    def forward(self, x):  # (B, D + 2): features, item id, marker
        if self.training:
            self.fed.append([(float(m), int(i)) for i, m in zip(x[:, D], x[:, D + 1], strict=True)])
        return self.head(x[:, :D])


def _source(n, marker, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([torch.randn(n, D, generator=g), torch.arange(n).view(-1, 1), torch.full((n, 1), marker)], dim=1)
    y = torch.arange(n) % K
    return Source(size=n, fetch=lambda idx: (x[idx], y[idx], None))


def _fit(model, plan, *, n_real=10, n_syn=50, validate=lambda: 0.0, snapshot=dict, **hyper):
    settings = {"lr": 0.01, "weight_decay": 0.0, "real_batch_size": 4, "syn_batch_size": 16, **hyper}
    return fewshot_fit.fit(
        model, list(model.parameters()), real=_source(n_real, REAL, 0), syn=_source(n_syn, SYN, 1), plan=plan,
        hyper=Hyper(**settings), validate=validate, snapshot=snapshot, seed=3,
    )  # fmt: skip


def test_mix_feeds_one_real_batch_and_one_synthetic_batch_every_step():
    model = Recorder()
    outcome = _fit(model, fewshot_fit.phases("mix", epochs=2, real_epochs=99))
    assert len(model.fed) == 2 * math.ceil(50 / 16)  # steps: synthetic passes x batches per pass
    for rows in model.fed:
        kinds = Counter(m for m, _ in rows)
        assert kinds[REAL] == 4 and kinds[SYN] in (16, 50 % 16)
        assert [m for m, _ in rows] == sorted((m for m, _ in rows), reverse=True)  # real rows first
    syn_seen = Counter(i for rows in model.fed for m, i in rows if m == SYN)
    assert syn_seen == {i: 2 for i in range(50)}  # each synthetic image once per epoch
    real_seen = Counter(i for rows in model.fed for m, i in rows if m == REAL)
    assert sum(real_seen.values()) == 4 * len(model.fed) and set(real_seen) == set(range(10))
    assert max(real_seen.values()) - min(real_seen.values()) <= 1  # the real loader cycles through all shots
    trained = [p for p in outcome.curve if p["epoch"] > 0]
    assert [(p["real_images"], p["syn_images"]) for p in trained] == [(16, 50), (16, 50)]


def test_phase_wise_schedules_feed_one_kind_per_phase_in_order():
    for schedule, first in (("syn-then-real", SYN), ("real-then-syn", REAL)):
        model = Recorder()
        _fit(model, fewshot_fit.phases(schedule, epochs=1, real_epochs=2))
        kinds = [{m for m, _ in rows} for rows in model.fed]
        assert all(len(k) == 1 for k in kinds)
        order = [k.pop() for k in kinds]
        switch = order.index(1.0 - first)
        assert set(order[:switch]) == {first} and set(order[switch:]) == {1.0 - first}
        syn_steps, real_steps = math.ceil(50 / 16), 2 * math.ceil(10 / 4)
        assert switch == (syn_steps if first == SYN else real_steps) and len(order) == syn_steps + real_steps


def test_real_only_passes_are_real_batches_of_the_configured_size():
    model = Recorder()
    _fit(model, fewshot_fit.phases(None, epochs=9, real_epochs=3))
    assert [len(rows) for rows in model.fed] == [4, 4, 2] * 3
    assert Counter(i for rows in model.fed for _m, i in rows) == {i: 3 for i in range(10)}


def test_selection_compares_only_the_final_phase_on_validation():
    model = Recorder()
    scores = iter([0.5, 0.2, 0.9, 0.9])  # start of the real phase, then after each of its 3 epochs
    calls = []

    def validate():
        calls.append(len(model.fed))
        return next(scores)

    outcome = _fit(
        model,
        fewshot_fit.phases("syn-then-real", epochs=2, real_epochs=3),
        validate=validate,
        snapshot=lambda: {"steps": torch.tensor(len(model.fed))},
    )
    syn_steps, real_steps = 2 * math.ceil(50 / 16), math.ceil(10 / 4)
    assert calls == [syn_steps + i * real_steps for i in range(4)]  # nothing validated during the first phase
    assert (outcome.best_epoch, outcome.best_val_top1) == (2 + 2, 0.9)  # ties go to the earlier epoch
    assert int(outcome.state["steps"]) == syn_steps + 2 * real_steps


def test_without_validation_the_last_epoch_is_kept():
    model = Recorder()
    outcome = _fit(
        model,
        fewshot_fit.phases("syn-then-real", epochs=2, real_epochs=3),
        validate=None,
        snapshot=lambda: {"steps": torch.tensor(len(model.fed))},
    )
    assert outcome.best_epoch == 2 + 3 and outcome.best_val_top1 is None
    assert int(outcome.state["steps"]) == len(model.fed)  # the state after every step
    assert all(p["val_top1"] is None for p in outcome.curve) and outcome.curve[0]["epoch"] == 1


def test_selection_never_falls_back_to_the_untrained_state():
    model = Recorder()
    scores = iter([0.9, 0.1, 0.1])  # the initial head scores best; the trained epochs tie
    outcome = _fit(
        model,
        fewshot_fit.phases(None, epochs=9, real_epochs=2),
        validate=lambda: next(scores),
        snapshot=lambda: {"steps": torch.tensor(len(model.fed))},
    )
    assert (outcome.best_epoch, outcome.best_val_top1) == (1, 0.1)  # a trained epoch; ties to the earlier
    assert outcome.curve[0] == {**outcome.curve[0], "epoch": 0, "val_top1": 0.9}  # recorded, not selected
    assert int(outcome.state["steps"]) == math.ceil(10 / 4)


def _unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def _signal_task(seed=0, syn_noise=0.3):
    """Features with class signal: (inputs, real shot features, test features, test labels, text head)."""
    g = torch.Generator().manual_seed(0)
    k, d, per_class = 6, 32, 60
    means = _unit(torch.randn(k, d, generator=g))
    text = _unit(means + 6.0 * _unit(torch.randn(k, d, generator=g)))  # a poor zero-shot head

    def draw(n, noise, gen=g):
        labels = torch.arange(k).repeat_interleave(n)
        return _unit(means[labels] + noise * torch.randn(len(labels), d, generator=gen)), labels

    real, real_y = draw(1, 0.5)  # one noisy shot per class
    test, test_y = draw(100, 0.3)
    syn, syn_y = draw(per_class, syn_noise, torch.Generator().manual_seed(100 + seed))
    split = FewShotSplit(
        "cifar10", "train", "x", 1, 0, tuple(Shot(i, int(c), f"i{i}", "") for i, c in enumerate(real_y)), "d"
    )
    rows = torch.arange(len(syn_y))
    val = rows[rows % per_class < 10]  # 10 per class held out
    inputs = fewshot_tune.Inputs(
        split=split, feats=syn, labels=syn_y, train_rows=rows[rows % per_class >= 10], val_rows=val,
        teacher={int(r): 10.0 * syn[r] @ text.T for r in rows}, weight=10.0 * text, bias=torch.zeros(k), val_seed=0,
    )  # fmt: skip
    return inputs, real, test, test_y, text


def test_ct_init_never_reads_synthetic_images():
    cfg = config.load("tiny", ["fewshot.select=syn-val", "fewshot.epochs=2", "fewshot.real_epochs=5"])
    heads = []
    for seed, noise in ((0, 0.3), (1, 3.0)):  # other synthetic data, another synthetic validation set
        inputs, real, *_ = _signal_task(seed, noise)
        heads.append(fewshot_features.fit_on_features(cfg, inputs, real, "cpu", progress=False))
    first, second = heads
    assert all(torch.equal(first["ct_init"].state[k], second["ct_init"].state[k]) for k in ("weight", "bias"))
    assert first["ct_init"].best_epoch == second["ct_init"].best_epoch == 5  # syn-val: CT w. init keeps its last epoch
    assert first["ct_init"].best_val_top1 is None and first["ct_syn"].best_val_top1 is not None
    assert not torch.equal(first["ct_syn"].state["weight"], second["ct_syn"].state["weight"])


def test_real_val_selects_both_heads_on_the_real_validation_features():
    cfg = config.load("tiny", ["fewshot.select=real-val", "fewshot.epochs=3", "fewshot.real_epochs=4"])
    inputs, real, test, test_y, _ = _signal_task()
    val_shots = tuple(Shot(100 + i, i % 6, f"v{i}", "") for i in range(6))
    inputs = dataclasses.replace(inputs, split=dataclasses.replace(inputs.split, val=val_shots))
    outcomes = fewshot_features.fit_on_features(cfg, inputs, real, "cpu", progress=False, val_x=test[::100])
    for variant, epochs in (("ct_init", 4), ("ct_syn", 3)):
        scored = [p for p in outcomes[variant].curve if p["epoch"] > 0]
        assert len(scored) == epochs and all(p["val_top1"] is not None for p in scored)
        assert outcomes[variant].best_val_top1 == max(p["val_top1"] for p in scored)


def test_synthetic_data_with_class_signal_beats_real_shots_alone_at_one_shot():
    inputs, real, test, test_y, text = _signal_task()
    cfg = config.load("tiny", ["fewshot.lr=0.05", "fewshot.epochs=10", "fewshot.real_epochs=100", "tune.loss=ce"])
    outcomes = fewshot_features.fit_on_features(cfg, inputs, real, "cpu", progress=False)

    def test_top1(variant):
        state = outcomes[variant].state
        return top1(test @ state["weight"].T + state["bias"], test_y)

    zero_shot = top1(test @ (10.0 * text).T, test_y)
    assert test_top1("ct_init") > zero_shot + 0.05  # the real shots help a little...
    assert test_top1("ct_syn") > test_top1("ct_init") + 0.2  # ...the synthetic data far more


def test_warmup_longer_than_a_phase_is_refused():
    with pytest.raises(UsageError, match="tune.warmup_epochs=2 leaves nothing of the 2-epoch mix phase"):
        _fit(Recorder(), fewshot_fit.phases("mix", epochs=2, real_epochs=5), warmup_epochs=2)
