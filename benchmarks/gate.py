"""Row 9: the quality gate's cost, where it runs, and its memory; and what it costs on a GPU, by FLOPs.

9.  `synthset generate` with the gate (tiny CLIP + tiny safety checker, `nsfw: keep` and no minimum, so the
    same images are made: what is timed is scoring, not redraws) / without it, side by side in rounds of
    fresh plans, in another order each round (as rows 1-2). Goal <= 1.10, judged on the processes' CPU time
    (user + system, `os.wait4`): on this shared 2-core machine the wall time of identical processes swings by
    tens of percent, CPU time far less. The gate's own share (thread CPU time of its preprocessing, scoring
    and judging), its one-off model load per process and the wall-time ratio are given beside it.
9b. Where to score: the in-process gate's CPU seconds against a separate `synthset score`-style stage's
    *lower bound*: a fresh process that loads the same models, reads and decodes every image of the
    ungated run and scores it, writing nothing (a real stage would also rewrite every shard, and could not
    redraw without loading the generator too). The cheaper one is what synthset does.
9c. Peak RSS of the gated generate / the ungated one (the two models loaded).
9d. GPU estimate, by FLOPs (`torch.utils.flop_counter` on the meta device, no weights): the real gate
    (open_clip ViT-B/32 image tower + the CompVis checker's ViT-L/14) per image, against one SD 2.1-base
    image at 512 px (25 steps with classifier-free guidance + the VAE decode).
"""

from __future__ import annotations

import shutil

from benchmarks.common import PYTHON, Context, Row, judged, planned_run, ratio, run_child
from benchmarks.gpu import SD21_BASE_UNET, STEPS, TEXT_TOKENS

GATE = {
    "checker": "synthset-testing:tiny-safety-checker",
    "clip_model": "synthset-testing:tiny-clip",
    "nsfw": "keep",  # no redraws: every image is made once in both cases, only scoring differs
    "max_redraws": 0,
    "near_duplicates": {"threshold": 0.9999},  # counted only: the near-duplicate search is timed too
}
ORDERS = [["plain", "gated"], ["gated", "plain"]]
# The CompVis safety checker's vision tower (its config.json: CLIP ViT-L/14, projection 768).
CHECKER_VISION = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
                  "patch_size": 14, "image_size": 224, "hidden_act": "quick_gelu"}  # fmt: skip
SD_VAE = {"block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
          "up_block_types": ["UpDecoderBlock2D"] * 4, "layers_per_block": 2, "latent_channels": 4,
          "sample_size": 512}  # fmt: skip


def gpu_flops() -> dict[str, float]:
    """FLOPs per image of the real gate's two models and of one SD 2.1-base image, counted on the meta device."""
    import diffusers
    import open_clip
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import CLIPConfig

    def flops(call) -> float:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            call()
        return float(counter.get_total_flops())

    with torch.device("meta"):
        unet = diffusers.UNet2DConditionModel(**SD21_BASE_UNET)
        vae = diffusers.AutoencoderKL(**SD_VAE)
        clip = open_clip.create_model("ViT-B-32", device="meta")
        checker = StableDiffusionSafetyChecker(CLIPConfig(vision_config=CHECKER_VISION, projection_dim=768))
        latent = torch.randn(2, 4, 64, 64)  # one image, classifier-free guidance: two UNet rows
        step = flops(lambda: unet(latent, torch.tensor(999), torch.randn(2, TEXT_TOKENS, 1024)))
        decode = flops(lambda: vae.decode(torch.randn(1, 4, 64, 64)))
        pixels = torch.randn(1, 3, 224, 224)
        vit_b32 = flops(lambda: clip.encode_image(pixels))
        vit_l14 = flops(lambda: checker.visual_projection(checker.vision_model(pixels)[1]))
    image = STEPS * step + decode
    return {"sd_image": image, "unet_step_cfg": step, "vae_decode": decode, "clip_vit_b32": vit_b32,
            "checker_vit_l14": vit_l14, "gate_share": (vit_b32 + vit_l14) / image,
            "clip_share": vit_b32 / image}  # fmt: skip


def measure(ctx: Context) -> list[Row]:
    from synthset import testing

    testing.tiny_open_clip_path()  # built here, not raced by the children
    testing.tiny_safety_checker_path()
    images, rounds = ctx.args.gate_images, ctx.args.rounds
    chunk = images // rounds
    keys = ("work_s", "loop_s", "load_s", "gate_cpu_s", "gate_load_cpu_s", "cpu_s", "work_cpu_s")
    totals: dict[str, dict] = {case: {**dict.fromkeys(keys, 0.0), "rss": []} for case in ("plain", "gated", "score")}
    per_round = []
    warmup = planned_run(ctx.work, "gate-warmup", 8, quality=GATE)
    run_child([*PYTHON, "-m", "benchmarks.child", "synthset", str(warmup)], ctx.work / "logs", "gate-warmup")
    for r in range(rounds):
        runs = {
            "plain": planned_run(ctx.work, f"gate-plain-{r}", chunk, seed=r),
            "gated": planned_run(ctx.work, f"gate-gated-{r}", chunk, seed=r, quality=GATE),
        }
        this_round = {}
        for case in ORDERS[r % len(ORDERS)]:
            result = run_child([*PYTHON, "-m", "benchmarks.child", "synthset", str(runs[case])], ctx.work / "logs",
                               f"gate-{r}-{case}").check()  # fmt: skip
            assert result.report["images"] == chunk, result.report
            report = result.report
            this_round[case] = report["work_s"]
            totals[case]["work_s"] += report["work_s"]
            totals[case]["loop_s"] += report["loop_s"] + report["tail_s"]  # from the first pipeline call on
            totals[case]["load_s"] += report["load_s"]
            totals[case]["gate_cpu_s"] += report["gate_cpu_s"]
            totals[case]["gate_load_cpu_s"] += report["gate_load_cpu_s"]
            totals[case]["cpu_s"] += result.cpu_s
            totals[case]["rss"].append(result.max_rss_mib)
        result = run_child([*PYTHON, "-m", "benchmarks.child", "score", str(runs["gated"]), str(runs["plain"])],
                           ctx.work / "logs", f"gate-{r}-score").check()  # fmt: skip
        assert result.report["images"] == chunk, result.report
        this_round["score"] = result.report["work_s"]
        totals["score"]["work_s"] += result.report["work_s"]
        totals["score"]["work_cpu_s"] += result.report["work_cpu_s"]
        totals["score"]["rss"].append(result.max_rss_mib)
        per_round.append(this_round)
        print(f"  round {r}: " + ", ".join(f"{c} {s:.2f} s" for c, s in this_round.items()), flush=True)
        for run_dir in runs.values():
            shutil.rmtree(run_dir, ignore_errors=True)
    for case in ("plain", "gated"):
        ctx.check_long_enough(f"gate: {case}", totals[case]["work_s"])

    plain, gated = totals["plain"], totals["gated"]
    wall = ratio(gated["work_s"], plain["work_s"])
    cpu = ratio(gated["cpu_s"], plain["cpu_s"])
    gate_share = ratio(gated["gate_cpu_s"], gated["cpu_s"])
    load_cpu = gated["gate_load_cpu_s"] / rounds
    rounds_wall = [ratio(x["gated"], x["plain"]) for x in per_round]
    spread = "" if rounds == 1 else f" (rounds {min(rounds_wall):.2f}-{max(rounds_wall):.2f})"
    rss_plain, rss_gated = max(plain["rss"]), max(gated["rss"])
    in_process = gated["gate_cpu_s"] + gated["gate_load_cpu_s"]
    separate = totals["score"]["work_cpu_s"]
    choice = "in-process" if in_process <= separate else "a separate stage"
    figures = gpu_flops()
    return [
        # Judged on CPU time: on this shared machine the wall time of one process swings by tens of percent.
        Row(
            "9. quality gate: generate with gate / without, CPU time (tiny CLIP + checker)",
            f"{cpu:.3f} ({gated['cpu_s']:.1f} / {plain['cpu_s']:.1f} CPU-s, {images} img; the gate's own threads "
            f"{gate_share:.1%} of it, + {load_cpu:.1f} CPU-s per process to load its models; wall {wall:.2f}{spread})",
            "<= 1.10",
            judged(cpu <= 1.10),
            {
                "ratio_cpu": cpu,
                "ratio_wall": wall,
                "gate_cpu_share": gate_share,
                "gate_load_cpu_s_per_process": load_cpu,
                "per_round_work_s": per_round,
                "totals": totals,
                "images": images,
            },
        ),  # fmt: skip
        Row(
            "9b. where to score: in-process gate / separate stage (lower bound), CPU time",
            f"{ratio(in_process, separate):.3f} ({in_process:.1f} CPU-s: load + preprocess + score + judge, vs >= "
            f"{separate:.1f} for a score stage: load + read + decode + score, no rewrite): {choice} is cheaper",
            "-",
            "info",
            {"in_process_cpu_s": in_process, "separate_stage_lower_bound_cpu_s": separate, "choice": choice},
        ),
        Row(
            "9c. memory: peak RSS with the gate loaded / without",
            f"{ratio(rss_gated, rss_plain):.3f} ({rss_gated:.0f} / {rss_plain:.0f} MiB)",
            "-",
            "info",
            {"ratio": ratio(rss_gated, rss_plain), "gated_mib": rss_gated, "plain_mib": rss_plain},
        ),
        Row(
            "9d. GPU estimate by FLOPs: gate / one SD 2.1-base 512 px image",
            f"{figures['gate_share']:.2%} (ViT-B/32 {figures['clip_vit_b32'] / 1e9:.1f} + checker ViT-L/14 "
            f"{figures['checker_vit_l14'] / 1e9:.0f} GFLOP vs {figures['sd_image'] / 1e12:.1f} TFLOP: {STEPS} "
            f"CFG steps + VAE decode; CLIP alone {figures['clip_share']:.3%})",
            "-",
            "info",
            figures,
        ),
    ]
