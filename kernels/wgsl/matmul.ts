/** Matrix multiply C = op(A) op(B) (+ bias), register-blocked 4 x 4 per thread. */

import type { KernelSource } from "../backend.ts";
import { declareBindings, kernel, linearMain, WORKGROUP_SIZE } from "./common.ts";

/**
 * How an operand is loaded: `"k"` as vec4s of 4 consecutive k (A row-major with K a multiple of 4,
 * or B stored [N, K]), `"mn"` as vec4s of a block's 4 rows of A or 4 columns of B at one k (A
 * stored [K, M] with M a multiple of 4, or B row-major with N a multiple of 4), `"scalar"` one
 * float per row (column) and k. On llvmpipe every storage load is a per-lane loop, so a 4 x 4
 * block that loads 8 floats per k runs at 2-5 GFLOP/s; vec4 loads cut the loops by up to 4.
 */
export type MatmulLoad = "k" | "mn" | "scalar";

/** The loads {@link matmulKernel} can use for a product of these sizes and layouts. */
export function matmulLoads(
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
): { a: MatmulLoad; b: MatmulLoad } {
  const a: MatmulLoad = transA ? (m % 4 === 0 ? "mn" : "scalar") : (k % 4 === 0 ? "k" : "scalar");
  const b: MatmulLoad = transB ? (k % 4 === 0 ? "k" : "scalar") : (n % 4 === 0 ? "mn" : "scalar");
  return { a, b };
}

/**
 * C[M, N] = op(A)[M, K] * op(B)[K, N] (+ bias[N]). With `transA` A is stored [K, M]; with
 * `transB` B is stored [N, K] (a Linear weight). Each thread computes a 4 x 4 block of C. K may
 * be split: thread block b of split s sums k in [s * kPerSplit, (s + 1) * kPerSplit) into
 * c[s * M * N + ...] (the bias in split 0 only), and the launcher adds the splits up. With a `"k"`
 * load (see {@link MatmulLoad}) the loop takes 4 k at a time and kPerSplit must be a multiple of 4;
 * with `vec4Out` (N a multiple of 4) each row's 4 values are one vec4 store. Uniforms: M, N, K,
 * blocksN, kPerSplit.
 */
export function matmulKernel(
  transA: boolean,
  transB: boolean,
  bias: boolean,
  loadA: MatmulLoad = "scalar",
  loadB: MatmulLoad = "scalar",
  workgroup = WORKGROUP_SIZE,
  vec4Out = false,
): KernelSource {
  const bindings: [string, "read" | "readWrite", string][] = [
    ["a", "read", loadA === "scalar" ? "f32" : "vec4f"],
    ["b", "read", loadB === "scalar" ? "f32" : "vec4f"],
  ];
  if (bias) bindings.push(["bias", "read", "f32"]);
  bindings.push(["c", "readWrite", vec4Out ? "vec4f" : "f32"]);
  const scalarA = transA ? "a[k * params.M + m]" : "a[m * params.K + k]";
  const scalarB = transB ? "b[n * params.K + k]" : "b[k * params.N + n]";
  const step = loadA === "k" || loadB === "k" ? 4 : 1;
  const rows = ["ms.x", "ms.y", "ms.z", "ms.w"];
  const cols = ["ns.x", "ns.y", "ns.z", "ns.w"];
  const ks = Array.from({ length: step }, (_, i) => i);
  // The loads of one step, and A(r, kk) / the vec4 of B(kk, 0..3) in terms of them.
  const loads: string[] = [];
  let valueA: (r: number, kk: number) => string;
  if (loadA === "k") {
    rows.forEach((row, r) => loads.push(`let a${r} = a[(${row} * params.K + k) / 4u];`));
    valueA = (r, kk) => `a${r}[${kk}]`;
  } else if (loadA === "mn") {
    ks.forEach((kk) => loads.push(`let a_${kk} = a[((k + ${kk}u) * params.M + m0) / 4u];`));
    valueA = (r, kk) => `a_${kk}[${r}]`;
  } else {
    valueA = (r, kk) => `loadA(${rows[r]}, k + ${kk}u)`;
  }
  let vectorB: (kk: number) => string;
  if (loadB === "k") {
    cols.forEach((col, c) => loads.push(`let b${c} = b[(${col} * params.K + k) / 4u];`));
    vectorB = (kk) => `vec4f(b0[${kk}], b1[${kk}], b2[${kk}], b3[${kk}])`;
  } else if (loadB === "mn") {
    ks.forEach((kk) => loads.push(`let b_${kk} = b[((k + ${kk}u) * params.N + n0) / 4u];`));
    vectorB = (kk) => `b_${kk}`;
  } else {
    vectorB = (kk) => `vec4f(${cols.map((col) => `loadB(k + ${kk}u, ${col})`).join(", ")})`;
  }
  const body = ks.map((kk) =>
    [
      `let bv${kk} = ${vectorB(kk)};`,
      ...[0, 1, 2, 3].map((r) => `acc${r} = acc${r} + ${valueA(r, kk)} * bv${kk};`),
    ].join("\n    ")
  ).join("\n    ");
  // Scalar loads keep the original key.
  const flags: Record<string, string | number | boolean> = { transA, transB, bias };
  if (loadA !== "scalar" || loadB !== "scalar") Object.assign(flags, { loadA, loadB });
  if (workgroup !== WORKGROUP_SIZE) flags.wg = workgroup;
  if (vec4Out) flags.vec4Out = true;
  return kernel(
    "matmul",
    flags,
    bindings.map(([, kind]) => kind),
    `${declareBindings(bindings, "M: u32, N: u32, K: u32, blocksN: u32, kPerSplit: u32,")}
${loadA === "scalar" ? `fn loadA(m: u32, k: u32) -> f32 { return ${scalarA}; }\n` : ""}${
      loadB === "scalar" ? `fn loadB(k: u32, n: u32) -> f32 { return ${scalarB}; }\n` : ""
    }fn store(split: u32, m: u32, n0: u32, acc: vec4f) {
  if (m >= params.M) { return; }
  let base = split * params.M * params.N + m * params.N;
  ${
      vec4Out
        // N a multiple of 4: the block's 4 columns are inside C together, one vec4 store.
        ? `c[(base + n0) / 4u] = acc${
          bias
            ? " + select(vec4f(0.0), vec4f(bias[n0], bias[n0 + 1u], bias[n0 + 2u], bias[n0 + 3u]), " +
              "split == 0u)"
            : ""
        };`
        : `for (var l = 0u; l < 4u; l = l + 1u) {
    let n = n0 + l;
    if (n < params.N) {
      c[base + n] = acc[l]${bias ? " + select(0.0, bias[n], split == 0u)" : ""};
    }
  }`
    }
}
${linearMain(workgroup)}
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
  for (var k = kBegin; k < kEnd; k = k + ${step}u) {
    ${[...loads, body].join("\n    ")}
  }
  store(split, m0, n0, acc0);
  store(split, m0 + 1u, n0, acc1);
  store(split, m0 + 2u, n0, acc2);
  store(split, m0 + 3u, n0, acc3);
}`,
  );
}
