"""Checks kernels/ops.ts gemmPreferredOnGpu against the autotuner's timings of this run: the
total time of the rule's choices, of the per-shape best, and of ubo alone, over every (pass,
shape) entry, and the entries where the rule's choice is more than 15% (and 0.03 ms) slower.
Usage: python3 bench/results/nvidia-h200-2026-11-28/fit_gpu_rule.py"""
import json
import pathlib
import re

here = pathlib.Path(__file__).parent
choices = json.loads((here / "autotune-run2.json").read_text())["choices"]


def gemm_preferred(pass_, batch, in_c, side, out_c):
    """The rule of kernels/ops.ts (3x3 stride 1, square maps)."""
    pairs = in_c * out_c
    if pass_ == "backwardWeight":
        return (out_c >= 16 and batch * side * side >= 65536) or pairs >= 4096
    area = side * side
    return (area <= 256 and pairs >= 4096) or (area <= 1024 and pairs >= 16384)


totals = {"rule": 0.0, "best": 0.0, "ubo": 0.0}
for key, entry in choices.items():
    pass_, batch, in_c, side, _, out_c = re.match(
        r"(\w+):(\d+)x(\d+)x(\d+)x(\d+)->(\d+)", key).groups()
    ms = entry["ms"]
    choice = "gemm" if gemm_preferred(pass_, int(batch), int(in_c), int(side), int(out_c)) \
        else "ubo"
    best = min(ms.values())
    totals["rule"] += ms[choice]
    totals["best"] += best
    totals["ubo"] += ms["ubo"]
    if ms[choice] > 1.15 * best and ms[choice] - best > 0.03:
        print(f"miss {key}: {choice} {ms[choice]:.2f} ms, best {min(ms, key=ms.get)} {best:.2f}")
print(f"{len(choices)} entries: rule {totals['rule']:.1f} ms, best {totals['best']:.1f} ms, "
      f"ubo alone {totals['ubo']:.1f} ms")
