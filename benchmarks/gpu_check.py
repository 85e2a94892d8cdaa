"""One GPU check of the three hot paths, against FLOP anchors: a few minutes on an H100 or H200.

Random weights built from config (no hub, no synk8s import), so it needs only torch, torchvision,
diffusers and open_clip (see benchmarks/README.md for carrying their wheels to a machine without
network). It measures, in this order, printing progress on stderr and one JSON line on stdout:

1. a large bfloat16 matmul (8192 x 8192 x 8192): this GPU's own TFLOP/s;
2. generation: a Stable Diffusion 1.5-shaped UNet (320/640/1280/1280, cross-attention 768) and VAE in
   bfloat16, DDIM, 25 steps with classifier-free guidance (random 77 x 768 prompt embeddings, no text
   encoder), at 512 and 256 px; the batch size is autotuned (each candidate timed, the fastest that
   fits kept), then timed over ``--batches`` batches. Then, at 256 px and the chosen batch,
   channels-last and the plain attention processor on vs off (``--compile`` adds torch.compile);
3. CLIP RN50 image features (224 px, random weights) in float32 and bfloat16 autocast;
4. the pre-training input pipeline: JPEG tars decoded and augmented (RandomResizedCrop 224, flip) on
   DataLoader workers, against a ResNet-50 training step (bfloat16 autocast, channels-last, SGD).

Percent of the FLOP bound = images/s x FLOP per image / peak, for three peaks: 989 TFLOP/s (H100/H200
dense bfloat16 on paper), about 790 (a large bfloat16 matmul measured on an H200) and the matmul of
step 1. FLOP per image: 42.7 T at 512 px and about 9.6 T at 256 px (SD 1.5 UNet + VAE decoder,
25 steps with CFG), 12.2 G for CLIP RN50 at 224 px.

    python benchmarks/gpu_check.py            # on a CUDA machine; one line and exit 0 without one
    python benchmarks/gpu_check.py --smoke    # tiny shapes on CPU in seconds (the test suite runs it)
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

TFLOP_PER_IMAGE = {512: 42.7, 256: 9.6}  # SD 1.5 UNet + VAE decoder, 25 steps with CFG
CLIP_RN50_GFLOP = 12.2  # per 224 px image
PEAK_PAPER_TFLOPS = 989.0  # dense bfloat16, H100/H200 SXM data sheet
PEAK_MEASURED_TFLOPS = 790.0  # a large bfloat16 matmul measured on an H200
TEXT_TOKENS, TEXT_WIDTH = 77, 768
GUIDANCE = 7.5


def _log(message: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _seconds(fn: Callable[[], object], device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _percent(rate: float, flop_per_image: float, own_tflops: float | None) -> dict:
    """Achieved TFLOP/s and its percent of each peak (``flop_per_image`` in TFLOP)."""
    achieved = rate * flop_per_image
    return {
        "achieved_tflops": _sig(achieved),
        "pct_of_989_paper": _sig(100 * achieved / PEAK_PAPER_TFLOPS),
        "pct_of_790_measured": _sig(100 * achieved / PEAK_MEASURED_TFLOPS),
        "pct_of_own_matmul": _sig(100 * achieved / own_tflops) if own_tflops else None,
    }


def _sig(value: float) -> float:
    """``value`` to 4 significant digits (a slow smoke run's rates must not round to 0)."""
    return float(f"{value:.4g}")


def _out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


# ----------------------------------------------------------------------------- 1. matmul


def matmul_tflops(device: str, dtype: torch.dtype, n: int, iters: int) -> float:
    """TFLOP/s of ``iters`` (n x n) @ (n x n) products (2 n^3 FLOP each)."""
    a = torch.randn(n, n, device=device, dtype=dtype)  # (n, n)
    b = torch.randn(n, n, device=device, dtype=dtype)  # (n, n)
    out = torch.empty(n, n, device=device, dtype=dtype)  # (n, n), reused: no allocation in the loop

    def products(count: int) -> None:
        for _ in range(count):
            torch.matmul(a, b, out=out)

    products(3)
    return 2 * n**3 * iters / _seconds(lambda: products(iters), device) / 1e12


# ----------------------------------------------------------------------------- 2. generation


def sd_pipeline(device: str, dtype: torch.dtype, smoke: bool):
    """A Stable Diffusion 1.5-shaped pipeline (tiny when ``smoke``) with random weights and no text encoder."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    if smoke:
        widths, vae_widths, blocks = (32, 64), (32, 64), 2
    else:
        widths, vae_widths, blocks = (320, 640, 1280, 1280), (128, 256, 512, 512), 4
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * (blocks - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (blocks - 1),
        block_out_channels=widths,
        layers_per_block=1 if smoke else 2,
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=vae_widths,
        down_block_types=("DownEncoderBlock2D",) * len(vae_widths),
        up_block_types=("UpDecoderBlock2D",) * len(vae_widths),
        layers_per_block=1 if smoke else 2,
        norm_num_groups=32,
        scaling_factor=0.18215,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1,
    )  # fmt: skip
    pipe = StableDiffusionPipeline(
        vae=vae.eval(), text_encoder=None, tokenizer=None, unet=unet.eval(), scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device, dtype)


def generate(pipe, batch: int, resolution: int, steps: int) -> torch.Tensor:
    """One batch with classifier-free guidance: (B, 3, H, W) decoded pixels on the device."""
    device, dtype = pipe.unet.device, pipe.unet.dtype
    g = torch.Generator(device).manual_seed(0)
    embeds = torch.randn(batch, TEXT_TOKENS, TEXT_WIDTH, generator=g, device=device).to(dtype)  # (B, 77, 768)
    negative = torch.randn(batch, TEXT_TOKENS, TEXT_WIDTH, generator=g, device=device).to(dtype)  # (B, 77, 768)
    with torch.inference_mode():
        return pipe(
            prompt_embeds=embeds, negative_prompt_embeds=negative, generator=g, num_inference_steps=steps,
            guidance_scale=GUIDANCE, height=resolution, width=resolution, output_type="pt",
        ).images  # fmt: skip


def autotune(pipe, candidates: list[int], resolution: int, steps: int, device: str) -> tuple[int, dict]:
    """Time one batch of each candidate (after a warm-up); the fastest that fits in memory wins."""
    rates: dict[str, float | None] = {}
    for batch in candidates:
        try:
            generate(pipe, batch, resolution, steps)
            rates[str(batch)] = _sig(batch / _seconds(lambda b=batch: generate(pipe, b, resolution, steps), device))
        except (RuntimeError, MemoryError) as error:
            if not _out_of_memory(error):
                raise
            rates[str(batch)] = None
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
            break
        _log(f"  {resolution} px batch {batch}: {rates[str(batch)]} images/s")
    timed = {int(b): r for b, r in rates.items() if r is not None}
    return max(timed, key=lambda b: timed[b]), rates


def bench_generation(args: argparse.Namespace, device: str, dtype: torch.dtype, own: float | None) -> dict:
    """Images/s and percent of the FLOP bound at each resolution, then switches at the smaller one."""
    pipe = sd_pipeline(device, dtype, args.smoke)
    steps = 2 if args.smoke else 25
    # resolution -> (anchor resolution, batch candidates)
    plan = {32: (512, [1, 2]), 16: (256, [1, 2])} if args.smoke else {512: (512, [8, 16, 32, 48]),
                                                                      256: (256, [16, 32, 64, 128])}  # fmt: skip
    results = []
    for resolution, (anchor, candidates) in plan.items():
        _log(f"generation at {resolution} px: autotuning over {candidates}")
        batch, tuned = autotune(pipe, candidates, resolution, steps, device)
        seconds = _seconds(lambda b=batch, r=resolution: [generate(pipe, b, r, steps) for _ in range(args.batches)],
                           device)  # fmt: skip
        rate = batch * args.batches / seconds
        _log(f"  {resolution} px: batch {batch}, {rate:.2f} images/s")
        results.append({"resolution": resolution, "anchor_tflop_per_image": TFLOP_PER_IMAGE[anchor],
                        "autotune_images_per_s": tuned, "batch_size": batch, "images_per_s": _sig(rate),
                        **_percent(rate, TFLOP_PER_IMAGE[anchor], own)})  # fmt: skip
    resolution, batch = results[-1]["resolution"], results[-1]["batch_size"]
    return {"generation": results, "generation_switches": switches(pipe, args, batch, resolution, steps, device)}


def switches(pipe, args: argparse.Namespace, batch: int, resolution: int, steps: int, device: str) -> dict:
    """Channels-last, plain attention (and torch.compile) on vs off, interleaved, at one resolution and batch."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    def channels_last(on: bool) -> None:
        fmt = torch.channels_last if on else torch.contiguous_format
        pipe.unet.to(memory_format=fmt)
        pipe.vae.to(memory_format=fmt)

    def plain_attention(on: bool) -> None:
        processor = AttnProcessor() if on else AttnProcessor2_0()
        pipe.unet.set_attn_processor(processor)
        pipe.vae.set_attn_processor(processor)

    toggles = {"channels_last": channels_last, "attention_plain": plain_attention}
    best = {name: float("inf") for name in ("off", *toggles)}
    for _ in range(args.repeats):
        for name in best:
            if name != "off":
                toggles[name](True)
            generate(pipe, batch, resolution, steps)  # warm-up in this layout
            best[name] = min(best[name], _seconds(lambda: generate(pipe, batch, resolution, steps), device))
            if name != "off":
                toggles[name](False)
    ratios = {name: _sig(best["off"] / best[name]) for name in toggles}
    if args.compile:
        off = best["off"]
        pipe.unet = torch.compile(pipe.unet)
        pipe.vae.decoder = torch.compile(pipe.vae.decoder)
        compile_s = _seconds(lambda: generate(pipe, batch, resolution, steps), device)
        ratios["compile"] = _sig(off / _seconds(lambda: generate(pipe, batch, resolution, steps), device))
        ratios["compile_first_batch_s"] = round(compile_s, 1)
    _log(f"  switches at {resolution} px, batch {batch}: {ratios}")
    return {"resolution": resolution, "batch_size": batch, "on_over_off": ratios}


# ----------------------------------------------------------------------------- 3. CLIP features


def bench_clip(args: argparse.Namespace, device: str, own: float | None) -> dict:
    """CLIP RN50 image features/s in float32 and bfloat16 autocast, on fixed tensors."""
    import open_clip

    torch.manual_seed(0)
    if args.smoke:
        from open_clip.model import CLIP

        size, batch = 32, 4
        vision = {"image_size": size, "layers": (1, 1, 1, 1), "width": 16}
        text = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
        model = CLIP(embed_dim=32, vision_cfg=vision, text_cfg=text)
    else:
        size, batch = 224, 512
        model = open_clip.create_model("RN50", pretrained=None)
    model = model.to(device).eval().requires_grad_(False)
    pixels = torch.randn(batch, 3, size, size, device=device)  # (B, 3, 224, 224)
    rates = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        def encode(d: torch.dtype = dtype) -> None:
            with torch.inference_mode(), torch.autocast(device.split(":")[0], dtype=d, enabled=d != torch.float32):
                model.encode_image(pixels)

        encode()
        rates[name] = batch * args.batches / _seconds(lambda: [encode() for _ in range(args.batches)], device)
    _log(f"CLIP RN50: {rates} images/s")
    return {"clip_rn50": {"batch_size": batch, "images_per_s": {k: _sig(v) for k, v in rates.items()},
                          "bfloat16_over_float32": _sig(rates["bfloat16"] / rates["float32"]),
                          **_percent(rates["bfloat16"], CLIP_RN50_GFLOP / 1000, own)}}  # fmt: skip


# ----------------------------------------------------------------------------- 4. loader vs model


class _JpegTars(torch.utils.data.IterableDataset):
    """Samples of JPEG tars, tars split over DataLoader workers, decoded and augmented; ``rounds`` passes."""

    def __init__(self, tars: list[Path], crop: int, rounds: int):
        self.tars, self.crop, self.rounds = tars, crop, rounds

    def __iter__(self):
        from PIL import Image
        from torchvision import transforms

        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        augment = transforms.Compose([transforms.RandomResizedCrop(self.crop), transforms.RandomHorizontalFlip(),
                                      transforms.ToTensor()])  # fmt: skip
        for _ in range(self.rounds):
            for tar_path in self.tars[worker::workers]:
                with tarfile.open(tar_path) as tar:
                    for member in tar:
                        with Image.open(io.BytesIO(tar.extractfile(member).read())) as image:
                            yield augment(image.convert("RGB")), 0


def _write_tars(folder: Path, images: int, size: int, per_tar: int) -> list[Path]:
    from PIL import Image

    paths = []
    for t in range(0, images, per_tar):
        path = folder / f"{t // per_tar:05d}.tar"
        with tarfile.open(path, "w") as tar:
            for i in range(t, min(t + per_tar, images)):
                # Smooth content (16 x 16 noise scaled up) compresses like a photo, not like noise.
                coarse = torch.randint(0, 256, (16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(i))
                image = Image.fromarray(coarse.numpy()).resize((size, size), Image.BILINEAR)
                buf = io.BytesIO()
                image.save(buf, format="JPEG", quality=95)
                info = tarfile.TarInfo(f"{i:06d}.jpg")
                info.size = buf.tell()
                buf.seek(0)
                tar.addfile(info, buf)
        paths.append(path)
    return paths


def bench_loader(args: argparse.Namespace, device: str) -> dict:
    """Loader images/s by worker count against ResNet-50 training images/s (one process, one device)."""
    import torchvision

    # The loader's batches are smaller than the model's: each worker keeps 2 batches in shared memory.
    crop, size, images, batch, loader_batch, worker_counts = (
        (32, 64, 8, 2, 2, [0, 1]) if args.smoke else (224, 512, 1024, 256, 64, [4, 8, 16])
    )
    loader_rates = {}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as folder:
        tars = _write_tars(Path(folder), images, size, per_tar=max(1, images // 16))
        for workers in worker_counts:
            rounds = 1 if args.smoke else 4
            loader = torch.utils.data.DataLoader(
                _JpegTars(tars, crop, rounds), batch_size=loader_batch, num_workers=workers
            )
            it = iter(loader)
            next(it)  # workers started
            start, seen = time.perf_counter(), 0
            for pixels, _ in it:
                seen += len(pixels)
            loader_rates[str(workers)] = _sig(seen / (time.perf_counter() - start)) if seen else None
            _log(f"loader, {workers} workers: {loader_rates[str(workers)]} images/s")
    torch.manual_seed(0)
    model = torchvision.models.resnet50().to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    views = torch.randn(batch, 3, crop, crop, device=device).to(memory_format=torch.channels_last)  # (B, 3, H, W)
    labels = torch.randint(0, 1000, (batch,), device=device)  # (B,)

    def step() -> None:
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(views), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    steps = 1 if args.smoke else 10
    model_rate = batch * steps / _seconds(lambda: [step() for _ in range(steps)], device)
    _log(f"ResNet-50 training: {model_rate:.1f} images/s")
    best_workers = max((w for w in loader_rates if loader_rates[w]), key=lambda w: loader_rates[w], default=None)
    return {"loader": {"crop": crop, "jpeg_side": size, "batch_size": batch, "images_per_s_by_workers": loader_rates,
                       "resnet50_train_images_per_s": _sig(model_rate),
                       "workers_needed_per_process": _workers_needed(loader_rates, model_rate),
                       "best_loader_over_model": _sig(loader_rates[best_workers] / model_rate)
                       if best_workers else None}}  # fmt: skip


def _workers_needed(rates: dict[str, float | None], model_rate: float) -> int | None:
    """The fewest measured workers whose loader keeps up with the model; None if none does."""
    fast = [int(w) for w, r in rates.items() if r and r >= model_rate and int(w) > 0]
    return min(fast) if fast else None


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    """Run every part (each on its own: one that fails records its error) and print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on CPU: checks the script, measures nothing")
    parser.add_argument("--compile", action="store_true", help="also torch.compile the generator (1-3 min)")
    parser.add_argument("--batches", type=int, default=2, help="timed batches per measurement (default 2)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the switch comparison (default 2)")
    args = parser.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        result = {"benchmark": "gpu_check", "skipped": "no CUDA device visible; run it on a GPU node (or --smoke)"}
        print(json.dumps(result))
        return result
    device = "cpu" if args.smoke else "cuda"
    dtype = torch.float32 if args.smoke else torch.bfloat16
    if not args.smoke:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    result: dict = {"benchmark": "gpu_check", "smoke": args.smoke,
                    "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                    "torch": torch.__version__}  # fmt: skip
    if args.smoke:
        result["note"] = "smoke: tiny shapes on CPU against the full-size anchors; the figures measure nothing"
    started = time.perf_counter()
    own = None
    try:
        n, iters = (256, 2) if args.smoke else (8192, 50)
        own = matmul_tflops(device, dtype, n, iters)
        result["matmul_bf16_tflops"] = _sig(own)
        _log(f"matmul: {own:.1f} TFLOP/s")
    except Exception as error:  # a part that fails must not lose the others' figures
        result["matmul_error"] = _error(error)
    for name, part in (("generation", lambda: bench_generation(args, device, dtype, own)),
                       ("clip", lambda: bench_clip(args, device, own)),
                       ("loader", lambda: bench_loader(args, device))):  # fmt: skip
        try:
            result.update(part())
        except Exception as error:  # as above
            result[f"{name}_error"] = _error(error)
    if device == "cuda":
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))
    return result


def _error(error: BaseException) -> str:
    _log("".join(traceback.format_exception(error)))
    return f"{type(error).__name__}: {error}"[:300]


if __name__ == "__main__":
    main()
