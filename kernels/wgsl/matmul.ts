/** Matrix multiply C = op(A) op(B) (+ bias), register-blocked 4 x 4 per thread. */

import type { KernelSource } from "../backend.ts";
import { declareBindings, kernel, linearMain } from "./common.ts";

/**
 * C[M, N] = op(A)[M, K] * op(B)[K, N] (+ bias[N]). With `transA` A is stored [K, M]; with
 * `transB` B is stored [N, K] (a Linear weight). K may be split: thread block b of split s sums
 * k in [s * kPerSplit, (s + 1) * kPerSplit) into c[s * M * N + ...] (the bias in split 0 only),
 * and the launcher adds the splits up. Uniforms: M, N, K, blocksN, kPerSplit.
 */
export function matmulKernel(transA: boolean, transB: boolean, bias: boolean): KernelSource {
  const bindings: [string, "read" | "readWrite"][] = [["a", "read"], ["b", "read"]];
  if (bias) bindings.push(["bias", "read"]);
  bindings.push(["c", "readWrite"]);
  const loadA = transA ? "a[k * params.M + m]" : "a[m * params.K + k]";
  const loadB = transB ? "b[n * params.K + k]" : "b[k * params.N + n]";
  return kernel(
    "matmul",
    { transA, transB, bias },
    bindings.map(([, k]) => k),
    `${declareBindings(bindings, "M: u32, N: u32, K: u32, blocksN: u32, kPerSplit: u32,")}
fn loadA(m: u32, k: u32) -> f32 { return ${loadA}; }
fn loadB(k: u32, n: u32) -> f32 { return ${loadB}; }
fn store(split: u32, m: u32, n0: u32, acc: vec4f) {
  if (m >= params.M) { return; }
  let base = split * params.M * params.N + m * params.N;
  for (var l = 0u; l < 4u; l = l + 1u) {
    let n = n0 + l;
    if (n < params.N) {
      c[base + n] = acc[l]${bias ? " + select(0.0, bias[n], split == 0u)" : ""};
    }
  }
}
${linearMain()}
  let blocks = (params.M + 3u) / 4u * params.blocksN;
  let split = index / blocks;
  let kBegin = split * params.kPerSplit;
  // Past the last split (the grid's rounding); split 0 always runs, also for K = 0 (C = bias).
  if (split > 0u && kBegin >= params.K) { return; }
  let kEnd = min(params.K, kBegin + params.kPerSplit);
  let block = index % blocks;
  let m0 = (block / params.blocksN) * 4u;
  let n0 = (block % params.blocksN) * 4u;
  // Clamp rows/columns past the edge so loads stay in bounds; store() drops them.
  let lastM = params.M - 1u;
  let lastN = params.N - 1u;
  let ms = vec4u(min(m0, lastM), min(m0 + 1u, lastM), min(m0 + 2u, lastM), min(m0 + 3u, lastM));
  let ns = vec4u(min(n0, lastN), min(n0 + 1u, lastN), min(n0 + 2u, lastN), min(n0 + 3u, lastN));
  var acc0 = vec4f(0.0);
  var acc1 = vec4f(0.0);
  var acc2 = vec4f(0.0);
  var acc3 = vec4f(0.0);
  for (var k = kBegin; k < kEnd; k = k + 1u) {
    let bv = vec4f(loadB(k, ns.x), loadB(k, ns.y), loadB(k, ns.z), loadB(k, ns.w));
    acc0 = acc0 + loadA(ms.x, k) * bv;
    acc1 = acc1 + loadA(ms.y, k) * bv;
    acc2 = acc2 + loadA(ms.z, k) * bv;
    acc3 = acc3 + loadA(ms.w, k) * bv;
  }
  store(split, m0, n0, acc0);
  store(split, m0 + 1u, n0, acc1);
  store(split, m0 + 2u, n0, acc2);
  store(split, m0 + 3u, n0, acc3);
}`,
  );
}
