"""Model registries and loaders, exercised with the tiny random-weight models (offline, CPU)."""

import shutil

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from PIL import Image

from synk8s import models, storage
from synk8s.errors import MissingDataError, UsageError
from synk8s.models.generators import clip_bpe_tokenizer
from synk8s.models.weights import weight_load

pytestmark = pytest.mark.timeout(120)

PROMPTS = ["a photo of a goldfish.", "a photo of a red bus."]


def _generate(pipe, seed=1):
    generator = torch.Generator("cpu").manual_seed(seed)
    return pipe(PROMPTS, num_inference_steps=2, guidance_scale=3.0, height=32, width=32, generator=generator).images


def _sample(model, tokenizer, seed=3):
    batch = tokenizer(["goldfish, bowl"], return_tensors="pt")
    torch.manual_seed(seed)
    return model.generate(**batch, do_sample=True, max_new_tokens=24, num_return_sequences=8, top_k=50)


# ----------------------------------------------------------------------------- registries


def test_registered_generators_carry_paper_and_tiny_defaults():
    assert models.get_generator_info("sd-turbo").steps == 1
    assert models.get_generator_info("sd-turbo").guidance == 0.0
    assert models.get_generator_info("sdxl-turbo").pipeline == "sdxl"
    assert models.get_generator_info("sd21").resolution == 768
    tiny = models.get_generator_info("tiny-sd")
    assert (tiny.tiny, tiny.resolution, tiny.steps) == (True, 32, 2)


def test_raw_generator_id_gets_sd_defaults_and_revision():
    info = models.get_generator_info("someone/my-sd", revision="abc123")
    assert (info.model_id, info.revision, info.pipeline) == ("someone/my-sd", "abc123", "sd")
    assert info.steps == models.GENERATORS["sd15"].steps
    assert models.generator_identity("someone/my-sd") == ("someone/my-sd", "main")
    assert models.generator_identity("sd15", revision="r1") == (models.GENERATORS["sd15"].model_id, "r1")
    assert models.generator_identity("tiny-sd", seed=4) == ("synk8s/tiny-sd", "random-seed-4")


@pytest.mark.parametrize(
    ("lookup", "name"),
    [
        (models.get_clip_info, "rn500"),
        (models.get_le_info, "t5-large"),
        (models.get_backbone_info, "resnet5"),
        (models.get_generator_info, " "),
    ],
)
def test_unknown_names_raise_usage_error_listing_choices(lookup, name):
    with pytest.raises(UsageError, match="choose one of: ") as caught:
        lookup(name)
    assert "\n" not in str(caught.value)


def test_le_accepts_hub_ids():
    assert models.get_le_info("google/flan-t5-small").model_id == "google/flan-t5-small"
    assert models.get_le_info("t5-commongen").model_id == "mrm8488/t5-base-finetuned-common_gen"


def test_dtype_resolution():
    assert models.resolve_dtype("auto", "cpu") == torch.float32
    assert models.resolve_dtype("auto", "cuda:1") == torch.float16
    assert models.resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    assert models.auto_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UsageError, match="float64"):
        models.resolve_dtype("float64", "cpu")


# ----------------------------------------------------------------------------- generators


def test_clip_bpe_tokenizer_matches_open_clip():
    from open_clip.tokenizer import SimpleTokenizer

    text = "A photo of a goldfinch, a type of bird; 3 fish!"
    ids = clip_bpe_tokenizer()(text).input_ids
    reference = SimpleTokenizer()([text])[0]
    assert ids == reference[: len(ids)].tolist()
    assert len(ids) > 10


def test_tiny_generator_is_deterministic_across_loads():
    first = _generate(models.load_generator("tiny-sd", seed=0))
    second = _generate(models.load_generator("tiny-sd", seed=0))
    other_weights = _generate(models.load_generator("tiny-sd", seed=1))
    assert [im.size for im in first] == [(32, 32), (32, 32)]
    assert all(isinstance(im, Image.Image) for im in first)
    assert [im.tobytes() for im in first] == [im.tobytes() for im in second]
    assert first[0].tobytes() != other_weights[0].tobytes()
    assert np.asarray(first[0]).std() > 0  # not a blank image


def test_tiny_img2img_keeps_size():
    pipe = models.load_generator("tiny-sd", img2img=True)
    init = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    out = pipe(
        PROMPTS[:1],
        image=init,
        strength=0.5,
        num_inference_steps=2,
        guidance_scale=3.0,
        generator=torch.Generator("cpu").manual_seed(0),
    ).images
    assert out[0].size == (32, 32)


# ----------------------------------------------------------------------------- CLIP


def test_tiny_clip_encodes_normalised_features_deterministically():
    clip = models.load_clip("tiny-clip", seed=0)
    assert clip.image_size == 32
    assert clip.identity == "tiny-vit/random-seed-0"
    assert not any(p.requires_grad for p in clip.model.parameters())
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)) for _ in range(64)]
    batch = torch.stack([clip.preprocess(im) for im in images])  # (64, 3, 32, 32)
    assert batch.shape == (64, 3, 32, 32)
    image_features = clip.encode_image(batch)
    text_features = clip.encode_text(clip.tokenizer(PROMPTS))
    assert image_features.shape == (64, 32) and text_features.shape == (2, 32)
    assert torch.allclose(image_features.norm(dim=-1), torch.ones(64), atol=1e-5)
    assert torch.allclose(text_features.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert clip.logit_scale == pytest.approx(1 / 0.07, rel=1e-4)
    again = models.load_clip("tiny-clip", seed=0)
    assert torch.equal(again.encode_image(batch), image_features)
    assert not torch.equal(models.load_clip("tiny-clip", seed=1).encode_image(batch), image_features)


# ----------------------------------------------------------------------------- language enhancement


def test_tiny_t5_samples_reproducibly():
    model, tokenizer = models.load_le("tiny-t5", seed=0)
    out = _sample(model, tokenizer)
    assert out.shape[0] == 8 and out.shape[1] <= 25
    texts = tokenizer.batch_decode(out, skip_special_tokens=True)
    assert len(texts) == 8 and all(isinstance(t, str) for t in texts)
    assert torch.equal(_sample(model, tokenizer), out)
    model_again, _ = models.load_le("tiny-t5", seed=0)
    assert torch.equal(_sample(model_again, tokenizer), out)


# ----------------------------------------------------------------------------- backbones


def test_backbones_forward_a_batch():
    torch.manual_seed(0)
    tiny = models.build_backbone("tiny-resnet", num_classes=10).eval()
    assert tiny(torch.randn(4, 3, 32, 32)).shape == (4, 10)
    assert tiny.fc.in_features == 128
    resnet = models.build_backbone("resnet50", num_classes=7).eval()
    with torch.no_grad():
        assert resnet(torch.randn(2, 3, 64, 64)).shape == (2, 7)
    with pytest.raises(UsageError, match="no pretrained weights"):
        models.build_backbone("tiny-resnet", num_classes=10, pretrained=True)


# ----------------------------------------------------------------------------- model cache


def test_local_cache_round_trip_through_from_pretrained(tmp_path):
    reference = _generate(models.load_generator("tiny-sd", seed=0))
    models.load_generator("tiny-sd", seed=0).save_pretrained(tmp_path / "acme--tiny-sd-copy")
    cached = models.load_generator("acme/tiny-sd-copy", cache=str(tmp_path))
    assert [im.tobytes() for im in _generate(cached)] == [im.tobytes() for im in reference]

    model, tokenizer = models.load_le("tiny-t5", seed=0)
    model.save_pretrained(tmp_path / "acme--t5-copy")
    tokenizer.save_pretrained(tmp_path / "acme--t5-copy")
    cached_model, cached_tokenizer = models.load_le("acme/t5-copy", cache=str(tmp_path))
    assert torch.equal(_sample(cached_model, cached_tokenizer), _sample(model, tokenizer))


def test_missing_cache_entries_name_the_expected_path(tmp_path):
    with pytest.raises(MissingDataError, match="save_pretrained") as caught:
        models.load_generator("acme/absent", cache=str(tmp_path))
    assert str(tmp_path / "acme--absent") in str(caught.value)
    with pytest.raises(MissingDataError, match="save_pretrained"):
        models.load_le("t5-commongen", cache=str(tmp_path))
    with pytest.raises(MissingDataError, match="open_clip/RN50-openai.pt"):
        models.load_clip("rn50", cache=str(tmp_path))


def test_s3_cache_is_copied_once(s3_env, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNK8S_MODEL_CACHE_DIR", str(tmp_path / "mirror"))
    model, tokenizer = models.load_le("tiny-t5", seed=0)
    folder = tmp_path / "export"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    cache = f"{s3_env}/models"
    for path in folder.iterdir():
        storage.put_file(storage.join(cache, "acme--t5-copy", path.name), path)

    loaded, loaded_tokenizer = models.load_le("acme/t5-copy", cache=cache)
    assert torch.equal(_sample(loaded, loaded_tokenizer), _sample(model, tokenizer))
    for obj in storage.list(cache):
        storage.delete(obj.uri)
    again, _ = models.load_le("acme/t5-copy", cache=cache)  # served from the local copy
    assert torch.equal(_sample(again, loaded_tokenizer), _sample(model, tokenizer))
    with pytest.raises(MissingDataError, match=f"{cache}/acme--other/"):
        models.load_le("acme/other", cache=cache)


# ----------------------------------------------------------------------------- hub loads


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty hub cache in offline mode. The hub client reads both settings when first imported."""
    hub = tmp_path / "hf" / "hub"
    hub.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    return hub


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("load", "model_id", "layout"),
    [
        (lambda: models.load_le("t5-commongen"), "mrm8488/t5-base-finetuned-common_gen", "mrm8488--t5-base"),
        (lambda: models.load_generator("sd-turbo"), "stabilityai/sd-turbo", "<cache>/stabilityai--sd-turbo"),
        (lambda: models.load_clip("rn50"), "RN50/openai", "<cache>/open_clip/RN50-openai.pt"),
        (lambda: models.load_generator("not a//repo id"), "not a//repo id", "save_pretrained"),
    ],
    ids=["le", "generator", "clip", "bad-repo-id"],
)
def test_unreachable_hub_is_a_one_line_missing_data_error(offline_hub, load, model_id, layout):
    with pytest.raises(MissingDataError) as caught:
        load()
    message = str(caught.value)
    assert "\n" not in message
    assert "cannot load " in message and repr(model_id) in message
    assert "--set models.cache=DIR_OR_S3_PREFIX" in message and layout in message
    assert isinstance(caught.value.__cause__, OSError | RuntimeError | ValueError)  # the original, chained


@pytest.mark.timeout(30)
def test_malformed_repo_id_fails_fast_without_offline_mode(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(MissingDataError, match=r"cannot load generator 'not a//repo id' .*models\.cache=") as caught:
        models.load_generator("not a//repo id")
    assert "\n" not in str(caught.value)


def test_weight_load_lets_programming_errors_through():
    with pytest.raises(TypeError, match="a bug"), weight_load("generator", "acme/x", "layout"):
        raise TypeError("a bug")
    with pytest.raises(RuntimeError, match="unrelated"), weight_load("generator", "acme/x", "layout"):
        raise RuntimeError("unrelated")


def test_broken_cache_copy_is_a_one_line_error_naming_it(tmp_path):
    folder = tmp_path / "acme--broken"
    models.load_generator("tiny-sd", seed=0).save_pretrained(folder)
    for weights in (folder / "unet").glob("diffusion_pytorch_model.*"):
        weights.unlink()
    with pytest.raises(MissingDataError, match="from the model cache copy") as caught:
        models.load_generator("acme/broken", cache=str(tmp_path))
    assert str(folder) in str(caught.value) and "\n" not in str(caught.value)


def test_hub_load_records_the_commit_it_loaded(offline_hub, tmp_path):
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = offline_hub / "models--acme--tiny-sd"
    models.load_generator("tiny-sd", seed=0).save_pretrained(repo / "snapshots" / sha)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)

    pipe = models.load_generator("acme/tiny-sd")  # the real from_pretrained, resolving refs/main
    assert models.loaded_revision(pipe) == sha
    assert models.generator_identity("acme/tiny-sd") == ("acme/tiny-sd", "main")  # what was asked for
    reference = _generate(models.load_generator("tiny-sd", seed=0))
    assert [im.tobytes() for im in _generate(pipe)] == [im.tobytes() for im in reference]


def test_the_le_revision_picks_the_hub_snapshot_loaded_pulled_and_recorded(offline_hub, tmp_path):
    from typer.testing import CliRunner

    from synk8s import config
    from synk8s.cli.main import app
    from synk8s.stages.synth import prompts

    sha = "89abcdef0123456789abcdef0123456789abcdef"
    model, tokenizer = models.load_le("tiny-t5", seed=5)
    for part in (model, tokenizer):
        part.save_pretrained(offline_hub / "models--acme--t5" / "snapshots" / sha)
    assert models.get_le_info("acme/t5", sha).revision == sha
    assert models.get_le_info("tiny-t5", sha).revision is None  # built from config: no hub revision
    with pytest.raises(MissingDataError, match="cannot load LE model 'acme/t5'"):
        models.load_le("acme/t5")  # no refs/main: only the pinned commit is there
    loaded, _ = models.load_le("acme/t5", revision=sha)
    assert torch.equal(_sample(loaded, tokenizer), _sample(model, tokenizer))

    cache = str(tmp_path / "models")
    pulled = CliRunner().invoke(app, ["models", "pull", "acme/t5", "--kind", "le", "--revision", sha, "--cache", cache])
    assert pulled.exit_code == 0, pulled.output
    assert (tmp_path / "models" / "acme--t5" / "config.json").is_file()

    cfg = config.load("tiny", ["dataset.name=cifar10", "prompts.mode=LE", "models.le=acme/t5",
                               f"models.le_revision={sha}", "prompts.sentences_per_class=1"])
    manifest = storage.get_json(prompts.run(cfg, out=str(tmp_path / "prompts")).manifest_uri)
    assert manifest["le_model"] == {"model_id": "acme/t5", "revision": sha, "weights": "pretrained", "device": "cpu"}


def test_cache_and_tiny_loads_record_their_revision(tmp_path):
    assert models.loaded_revision(models.load_generator("tiny-sd", seed=3)) == "random-seed-3"
    models.load_generator("tiny-sd", seed=0).save_pretrained(tmp_path / "a" / "acme--sd")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    first = models.loaded_revision(models.load_generator("acme/sd", cache=str(tmp_path / "a")))
    assert first is not None and first.startswith("cache:") and len(first) == len("cache:") + 64
    assert models.loaded_revision(models.load_generator("acme/sd", cache=str(tmp_path / "b"))) == first
    (tmp_path / "b" / "acme--sd" / "README.md").write_text("a different copy\n")
    assert models.loaded_revision(models.load_generator("acme/sd", cache=str(tmp_path / "b"))) != first
