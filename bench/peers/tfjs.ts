/**
 * TF.js webgpu peer of bench/kernels.ts (run as a subprocess so a failure cannot break the
 * benchmark): the 3x3 32->32 conv at 64x64 (NHWC), forward and forward+backward, on the WebGPU
 * adapter Deno picks (the same as the engine's). Prints one JSON object on stdout.
 */

import * as tf from "@tensorflow/tfjs-core";
// The union package registers every gradient (tfjs-core alone registers none).
import "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-webgpu";

const batch = Number(Deno.args[0] ?? 64);
const reps = Number(Deno.args[1] ?? 2);

if (!(await tf.setBackend("webgpu"))) throw new Error("tf.setBackend('webgpu') failed");
await tf.ready();
const x = tf.randomNormal([batch, 64, 64, 32]) as tf.Tensor4D;
const w = tf.randomNormal([3, 3, 32, 32]) as tf.Tensor4D;
const flops = 2 * batch * 32 * 64 * 64 * 32 * 9;

async function timed(fn: () => tf.Tensor[], n: number): Promise<number> {
  const warm = fn();
  await Promise.all(warm.map((t) => t.data()));
  warm.forEach((t) => t.dispose());
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const out = fn();
    await Promise.all(out.map((t) => t.data()));
    out.forEach((t) => t.dispose());
  }
  return (performance.now() - t0) / n;
}

const results = [];
let ms = await timed(() => [tf.conv2d(x, w, 1, "same")], reps);
results.push({ what: "conv fwd 32->32 @64", ms, gflops: flops / ms / 1e6 });
const grads = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
  tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, "same")
);
ms = await timed(() => grads([x, w]), Math.max(1, reps - 1));
results.push({ what: "conv fwd+bwd 32->32 @64", ms, gflops: (3 * flops) / ms / 1e6 });
console.log(JSON.stringify({ version: tf.version_core, results }));
