"""Classifier tuning (CT): losses, schedule, clipping, validation-only model selection, learning."""

import inspect
import math

import pytest
import torch
from safetensors.torch import load, save

from synk8s import config, optim, storage
from synk8s.errors import MissingDataError
from synk8s.runs import write_manifest
from synk8s.stages.zeroshot import tune

pytestmark = pytest.mark.timeout(60)

K, D = 6, 32
LOGIT_SCALE = 10.0


def _unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def _class_data(means, per_class, noise, seed):
    """L2-normalised features around each class mean: (K * per_class, D) and labels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(means)).repeat_interleave(per_class)
    feats = _unit(means[labels] + noise * torch.randn(len(labels), means.shape[1], generator=g))
    return feats, labels


def write_upstream(root, *, per_class=40, head_noise=6.0, feature_noise=0.2, test_uri=None, seed=0):
    """Hand-made features and filter outputs with the stage file formats; returns the folders.

    Synthetic and real test features share class means; the text head is a perturbed copy of the
    means, so zero-shot accuracy is mediocre and training on the synthetic features can beat it.
    """
    cfg = config.load("tiny", [f"store.root={root}"])
    g = torch.Generator().manual_seed(seed)
    means = _unit(torch.randn(K, D, generator=g))
    text = _unit(means + head_noise * _unit(torch.randn(K, D, generator=g)))  # (K, D) far from the means
    synth, synth_labels = _class_data(means, per_class, feature_noise, seed + 1)
    test, test_labels = _class_data(means, per_class, feature_noise, seed + 2)

    features = storage.join(str(root), "features")
    cache = storage.join(str(root), "cache", "features")
    synth_uri = storage.join(cache, "synthetic.safetensors")
    storage.put_bytes(synth_uri, save({"features": synth, "labels": synth_labels}))
    if test_uri is None:
        test_uri = storage.join(cache, "test.safetensors")
        storage.put_bytes(test_uri, save({"features": test, "labels": test_labels}))
    storage.put_json(storage.join(features, "features.json"), {"synthetic": synth_uri, "test": test_uri})
    weight = LOGIT_SCALE * text
    storage.put_bytes(storage.join(features, "text_head.safetensors"), save({"weight": weight, "bias": torch.zeros(K)}))
    write_manifest(features, "features", cfg, counts={"synthetic": len(synth_labels), "test": len(test_labels)})

    selection = storage.join(str(root), "filter")
    teacher_all = synth @ weight.T  # (N, K)
    scores = teacher_all.softmax(-1)[torch.arange(len(synth_labels)), synth_labels]
    kept = torch.nonzero(scores >= 1.0 / K).flatten()  # the filter's default threshold
    storage.put_bytes(
        storage.join(selection, "selection.safetensors"),
        save({"scores": scores, "kept": kept, "teacher_logits": teacher_all[kept].contiguous()}),
    )
    write_manifest(selection, "filter", cfg, counts={"kept": len(kept)})
    return features, selection, (test, test_labels), weight


def _cfg(root, *overrides):
    base = [f"store.root={root}", "tune.epochs=8", "tune.lr=0.05", "tune.batch_size=32", "tune.val_fraction=0.2"]
    return config.load("tiny", [*base, *overrides])


def _head(result):
    return load(storage.get_bytes(result.head))


# ----------------------------------------------------------------------------- optim


def test_soft_targets_are_softmax_of_teacher_over_temperature():
    teacher = torch.tensor([[2.0, 0.0, -2.0], [1.0, 1.0, 4.0]])
    got = optim.soft_targets(teacher, 2.0)
    for row, logits in zip(got.tolist(), teacher.tolist()):
        exps = [math.exp(v / 2.0) for v in logits]
        assert row == pytest.approx([e / sum(exps) for e in exps], abs=1e-7)
    assert optim.soft_targets(teacher, 0.01).argmax(-1).tolist() == [0, 2]  # low T approaches one-hot


def test_tuning_loss_mixes_soft_and_hard_terms_by_hand():
    logits = torch.tensor([[1.0, 2.0, 0.5]])
    teacher = torch.tensor([[0.0, 3.0, 1.0]])
    labels = torch.tensor([0])
    log_q = [v - math.log(sum(math.exp(u) for u in logits[0].tolist())) for v in logits[0].tolist()]
    exps = [math.exp(v / 2.0) for v in teacher[0].tolist()]
    p = [e / sum(exps) for e in exps]
    sce = -sum(pi * lq for pi, lq in zip(p, log_q))
    ce = -log_q[0]
    got = optim.tuning_loss(logits, labels, teacher, soft_weight=0.3, temperature=2.0)
    assert float(got) == pytest.approx(0.3 * sce + 0.7 * ce, rel=1e-6)


def test_tuning_loss_with_no_soft_weight_is_exactly_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits, teacher = torch.randn(16, 5, generator=g), torch.randn(16, 5, generator=g)
    labels = torch.randint(0, 5, (16,), generator=g)
    ce = torch.nn.functional.cross_entropy(logits, labels)
    assert torch.equal(optim.tuning_loss(logits, labels, teacher, soft_weight=0.0, temperature=2.0), ce)
    with pytest.raises(ValueError, match="teacher_logits"):
        optim.tuning_loss(logits, labels, None, soft_weight=0.5)


def test_schedule_warms_up_linearly_then_decays_by_cosine_to_zero():
    f = [optim.cosine_factor(s, total_steps=15, warmup_steps=5) for s in range(16)]
    assert f[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert f[5] == 1.0
    assert f[10] == pytest.approx(0.5)
    assert f[14] == pytest.approx(0.5 * (1 + math.cos(math.pi * 9 / 10)))
    assert f[14] < 0.03 and f[15] == 0.0
    assert all(a >= b for a, b in zip(f[5:], f[6:]))
    assert optim.cosine_factor(0, total_steps=4) == 1.0
    with pytest.raises(ValueError, match="warmup_steps"):
        optim.cosine_factor(0, total_steps=4, warmup_steps=4)

    param = torch.nn.Parameter(torch.zeros(1))
    opt = optim.adamw([param], lr=0.1, weight_decay=0.0)
    sched = optim.cosine_schedule(opt, total_steps=15, warmup_steps=5)
    lrs = []
    for _ in range(15):
        lrs.append(opt.param_groups[0]["lr"])
        param.grad = torch.ones(1)
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1 * v for v in f[:15]])


def test_clip_and_step_clips_the_global_norm_before_stepping():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([a, b], lr=1.0)
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])  # global norm 5
    assert optim.clip_and_step(opt, [a, b], max_norm=1.0) == pytest.approx(5.0)
    assert a.tolist() == pytest.approx([-0.6, 0.0]) and b.tolist() == pytest.approx([-0.8])

    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])
    assert optim.clip_and_step(opt, [a, b], max_norm=None) == pytest.approx(5.0)
    assert a.tolist() == pytest.approx([-3.6, 0.0])


# ----------------------------------------------------------------------------- fit_head


def test_model_selection_follows_validation_even_when_test_prefers_a_later_epoch():
    g = torch.Generator().manual_seed(3)
    means = _unit(torch.randn(K, D, generator=g))
    init = LOGIT_SCALE * _unit(means + 0.9 * torch.randn(K, D, generator=g))
    x, y = _class_data(means, 30, 0.4, seed=4)
    x_test, y_test = _class_data(means, 30, 0.4, seed=5)
    # Validation labels are the text head's own predictions: epoch 0 is perfect on them, training
    # on the true labels moves away from them, while true-label (test) accuracy improves.
    x_val = _class_data(means, 10, 0.4, seed=6)[0]
    y_val = (x_val @ init.T).argmax(-1)
    fit = tune.fit_head(
        init,
        torch.zeros(K),
        (x, y, None),
        (x_val, y_val),
        epochs=6,
        lr=0.05,
        weight_decay=0.0,
        batch_size=32,
    )
    val = [row["val_top1"] for row in fit.curve]
    assert val[0] == 1.0 and min(val[1:]) < 1.0
    assert fit.best_epoch == 0 and torch.equal(fit.weight, init)

    # The test split prefers trained weights, i.e. a later epoch than the one validation picks.
    assert tune.top1(x_test @ _last_weight(init, x, y).T, y_test) > tune.top1(x_test @ init.T, y_test) + 0.05


def _last_weight(init, x, y):
    """Weight after 6 epochs of plain AdamW on true labels, without any model selection."""
    head = torch.nn.Linear(D, K)
    with torch.no_grad():
        head.weight.copy_(init)
        head.bias.zero_()
    opt = optim.adamw(head.parameters(), lr=0.05, weight_decay=0.0)
    for _ in range(6):
        for start in range(0, len(y), 32):
            loss = optim.tuning_loss(head(x[start : start + 32]), y[start : start + 32])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head.weight.detach()


def test_stratified_split_holds_out_every_class_and_is_seeded():
    labels = torch.tensor([0] * 10 + [1] * 3 + [2] * 1)
    train, val = tune.stratified_split(labels, 0.2, seed=7)
    assert sorted(train.tolist() + val.tolist()) == list(range(14))
    assert [int((labels[val] == c).sum()) for c in range(3)] == [2, 1, 0]
    assert torch.equal(val, tune.stratified_split(labels, 0.2, seed=7)[1])
    assert not torch.equal(val, tune.stratified_split(labels, 0.2, seed=8)[1])


# ----------------------------------------------------------------------------- stage


def test_ct_beats_the_text_head_on_held_out_real_features(tmp_path):
    features, selection, (test, test_labels), text_weight = write_upstream(tmp_path)
    result = tune.run(_cfg(tmp_path), features=features, selection=selection, out=str(tmp_path / "t"), progress=False)
    head = _head(result)
    zero_shot = tune.top1(test @ text_weight.T, test_labels)
    tuned = tune.top1(test @ head["weight"].T + head["bias"], test_labels)
    assert zero_shot < 0.8, "the fixture's text head should be mediocre"
    assert tuned > zero_shot + 0.1
    assert result.best_epoch > 0 and result.best_val_top1 > result.text_head_val_top1

    curve = storage.get_json(result.curve)
    assert curve["best_epoch"] == result.best_epoch
    assert len(curve["epochs"]) == 9 and curve["epochs"][0]["train_loss"] is None
    val = [row["val_top1"] for row in curve["epochs"]]
    assert result.best_epoch == val.index(max(val))
    assert curve["epochs"][-1]["lr"] < 0.05 * 0.05  # cosine decays towards 0
    losses = [row["train_loss"] for row in curve["epochs"][1:]]
    assert losses[-1] < losses[0]

    split = storage.get_json(result.split)
    kept = load(storage.get_bytes(storage.join(selection, "selection.safetensors")))["kept"].tolist()
    assert sorted(split["train"] + split["val"]) == sorted(kept)
    assert len(split["val"]) == result.val and not set(split["train"]) & set(split["val"])
    manifest = storage.get_json(result.manifest)
    assert manifest["stage"] == "tune" and manifest["counts"]["best_epoch"] == result.best_epoch
    head, about = tune.load_head(str(tmp_path / "t"))
    assert tuple(head["weight"].shape) == (K, D)
    assert about["config_digest"] == _cfg(tmp_path).digest() and about["best_epoch"] == result.best_epoch


def test_tune_never_reads_the_test_features(tmp_path):
    assert not {"test", "head", "images"} & set(inspect.signature(tune.run).parameters)
    missing = str(tmp_path / "nowhere" / "test.safetensors")
    features, selection, *_ = write_upstream(tmp_path, test_uri=missing)
    result = tune.run(_cfg(tmp_path), features=features, selection=selection, out=str(tmp_path / "t"), progress=False)
    assert result.train + result.val > 0 and not storage.exists(missing)


def test_same_seed_gives_identical_head_bytes_and_another_seed_does_not(tmp_path):
    features, selection, *_ = write_upstream(tmp_path)
    heads = []
    for i, seed in enumerate([0, 0, 1]):
        result = tune.run(
            _cfg(tmp_path, f"seed={seed}", "tune.epochs=3"),
            features=features,
            selection=selection,
            out=str(tmp_path / f"tune{i}"),
            progress=False,
        )
        heads.append(load(storage.get_bytes(result.head)))
    assert storage.get_bytes(str(tmp_path / "tune0" / "head.safetensors")) == storage.get_bytes(
        str(tmp_path / "tune1" / "head.safetensors")
    )
    assert not torch.equal(heads[0]["weight"], heads[2]["weight"])


def test_sce_with_zero_soft_weight_trains_the_same_head_as_ce(tmp_path):
    features, selection, *_ = write_upstream(tmp_path)

    def train(name, *overrides):
        cfg = _cfg(tmp_path, "tune.epochs=3", "tune.val_fraction=0.5", *overrides)
        return _head(tune.run(cfg, features=features, selection=selection, out=str(tmp_path / name), progress=False))

    # A large validation share keeps the text head from winning, so the trained weights are compared.
    ce = train("ce", "tune.loss=ce")
    sce0 = train("sce0", "tune.loss=sce", "tune.soft_weight=0")
    sce = train("sce", "tune.loss=sce", "tune.soft_weight=1", "tune.temperature=0.5")
    assert torch.equal(ce["weight"], sce0["weight"]) and torch.equal(ce["bias"], sce0["bias"])
    assert not torch.equal(ce["weight"], sce["weight"])


def test_grad_clip_changes_training_and_pre_clip_norms_are_recorded(tmp_path):
    features, selection, *_ = write_upstream(tmp_path)

    def train(name, clip):
        cfg = _cfg(tmp_path, "tune.epochs=3", f"tune.grad_clip={clip}")
        result = tune.run(cfg, features=features, selection=selection, out=str(tmp_path / name), progress=False)
        return _head(result), storage.get_json(result.curve)

    free, free_curve = train("free", "null")
    clipped, _ = train("clipped", 1e-4)
    assert min(row["grad_norm"] for row in free_curve["epochs"][1:]) > 1e-4
    assert not torch.equal(free["weight"], clipped["weight"])


def test_missing_or_mismatched_upstream_outputs_fail_with_one_line(tmp_path):
    features, selection, *_ = write_upstream(tmp_path)
    with pytest.raises(MissingDataError, match="synk8s stage filter"):
        tune.run(_cfg(tmp_path), features=features, selection=str(tmp_path / "nofilter"), out=str(tmp_path / "t"))
    sel = load(storage.get_bytes(storage.join(selection, "selection.safetensors")))
    sel["teacher_logits"] = sel["teacher_logits"][:, :3].contiguous()
    storage.put_bytes(storage.join(selection, "selection.safetensors"), save(sel))
    with pytest.raises(MissingDataError, match=r"teacher logits .* expected"):
        tune.run(_cfg(tmp_path), features=features, selection=selection, out=str(tmp_path / "t"))
