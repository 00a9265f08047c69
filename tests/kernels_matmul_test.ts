/**
 * The register-tiled matmul (ops.matmul) against a float64 reference: every transpose combination,
 * with and without bias, on odd shapes (M, N, K not multiples of 4), K split into several parts
 * (few outputs over a long K) and the autoencoder's Linear products (32 x 34 x 512 and back).
 */

import type { Backend } from "../kernels/backend.ts";
import * as ops from "../kernels/ops.ts";
import { assertClose, downloadBuffer, randomArray, testDevice, uploadBuffer } from "./helpers.ts";

const backend: Backend = (await testDevice()).backend;

/** C = op(A) op(B) + bias in float64 (A stored [K, M] with transA, B stored [N, K] with transB). */
function referenceMatmul(
  a: Float32Array,
  b: Float32Array,
  bias: Float32Array | null,
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let sum = bias ? bias[j] : 0;
      for (let t = 0; t < k; t++) {
        sum += (transA ? a[t * m + i] : a[i * k + t]) * (transB ? b[j * k + t] : b[t * n + j]);
      }
      c[i * n + j] = sum;
    }
  }
  return c;
}

async function checkMatmul(
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
  withBias: boolean,
): Promise<void> {
  const aData = randomArray(m * k, m + 3 * k);
  const bData = randomArray(k * n, n + 5 * k);
  const biasData = withBias ? randomArray(n, n + 7) : null;
  const a = uploadBuffer(backend, aData);
  const bMatrix = uploadBuffer(backend, bData);
  const bias = biasData ? uploadBuffer(backend, biasData) : null;
  const c = backend.pool.acquire(m * n * 4);
  ops.matmul(backend, a, bMatrix, bias, c, m, n, k, transA, transB);
  const out = await downloadBuffer(backend, c, m * n);
  const what = `${m}x${n}x${k} transA ${transA} transB ${transB}`;
  assertClose(out, referenceMatmul(aData, bData, biasData, m, n, k, transA, transB), what, {
    atol: 1e-4 * Math.sqrt(k),
    rtol: 1e-4,
  });
  for (const buffer of [a, bMatrix, bias, c]) if (buffer) backend.pool.release(buffer);
}

// [M, N, K]: odd sizes; long K with few outputs (split K, the splits added up); M, N or K a
// multiple of 4 (vec4 loads along it) or not; the demo autoencoder's Linear products (32 x 34 x
// 512 and its backward's).
const shapes: [number, number, number][] = [
  [1, 1, 1],
  [5, 3, 7],
  [9, 11, 34],
  [13, 6, 12],
  [3, 517, 34],
  [7, 9, 2100],
  [6, 2, 4101],
  // N a multiple of 4 (whole-vec4 stores) with K split: in fours (K = 3000) and not (K = 1030).
  [3, 8, 3000],
  [5, 12, 1030],
  [32, 34, 512],
  [32, 512, 34],
  [34, 512, 32],
];

for (const [m, n, k] of shapes) {
  Deno.test(`matmul ${m}x${n}x${k}, every transpose, bias or not`, async () => {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        await checkMatmul(m, n, k, transA, transB, !transA);
      }
    }
  });
}
