"""Checks kernels/ops.ts gemmPreferredOnGpu and gemmWidePreferredOnGpu (the untuned GPU defaults)
against the autotuner's timings of this run (round 14: the paper-size and demo-size face
autoencoders' layers, tuned by bench/profile_step.ts --tune and bench/step.ts): the total time of
the rules' choices, of the per-shape best, of the previous rule (round 13: gemm or ubo) and of ubo
alone, over every (pass, shape) entry, and the entries where the rules' choice is more than 15%
(and 0.03 ms) slower than the best.
Usage: python3 bench/results/nvidia-h200-2026-11-28/fit_gpu_rule_run4.py"""
import json
import math
import pathlib
import re

here = pathlib.Path(__file__).parent
choices = json.loads((here / "autotune-run4.json").read_text())["choices"]


def dims(pass_, batch, in_c, side, out_c):
    """The product's M, N, K of a pass (kernels/conv_gemm.ts gemmDimensions, 3x3 stride 1)."""
    if pass_ == "forward":
        return out_c, batch * side * side, in_c * 9
    if pass_ == "backwardInput":
        return in_c, batch * side * side, out_c * 9
    return out_c, in_c * 9, batch * side * side


def gemm_preferred(pass_, batch, in_c, side, out_c, pairs_at_1024=8192):
    """kernels/ops.ts gemmPreferredOnGpu (round 13 had 16384 pairs at areas up to 1024)."""
    pairs = in_c * out_c
    if pass_ == "backwardWeight":
        return (out_c >= 16 and batch * side * side >= 65536) or pairs >= 4096
    area = side * side
    return (area <= 256 and pairs >= 4096) or (area <= 1024 and pairs >= pairs_at_1024)


def wide_preferred(pass_, *shape):
    """kernels/ops.ts gemmWidePreferredOnGpu."""
    m, n, _ = dims(pass_, *shape)
    if m < 128:
        return False
    if pass_ == "backwardWeight":
        return n >= 2048
    return math.ceil(m / 128) * math.ceil(n / 128) >= 128


totals = {"rules": 0.0, "best": 0.0, "round 13 rule": 0.0, "ubo alone": 0.0}
for key, entry in choices.items():
    pass_, *shape = re.match(r"(\w+):(\d+)x(\d+)x(\d+)x\d+->(\d+)", key).groups()
    shape = tuple(map(int, shape))
    ms = entry["ms"]
    choice = "ubo"
    if gemm_preferred(pass_, *shape):
        choice = "gemm-wide" if wide_preferred(pass_, *shape) else "gemm"
    old = "gemm" if gemm_preferred(pass_, *shape, pairs_at_1024=16384) else "ubo"
    best = min(ms.values())
    totals["rules"] += ms[choice]
    totals["best"] += best
    totals["round 13 rule"] += ms[old]
    totals["ubo alone"] += ms["ubo"]
    if ms[choice] > 1.15 * best and ms[choice] - best > 0.03:
        print(f"miss {key}: {choice} {ms[choice]:.2f} ms, best {min(ms, key=ms.get)} {best:.2f}")
print(f"{len(choices)} entries: " + ", ".join(f"{k} {v:.1f} ms" for k, v in totals.items()))
