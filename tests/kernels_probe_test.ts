/**
 * The FMA probe (the benchmark's arithmetic ceiling) computes what it says: every thread's chains
 * against a float64 reference, with a thread count that is not a workgroup multiple.
 */

import * as ops from "../kernels/ops.ts";
import { FMA_PROBE_CHAINS } from "../kernels/wgsl/probe.ts";
import { assertClose, downloadBuffer, testDevice } from "./helpers.ts";

const backend = (await testDevice()).backend;

Deno.test("fmaProbe: every thread's chains match the float64 reference", async () => {
  const threads = 77;
  const iterations = 13;
  const m = 0.97;
  const a = 0.003;
  const out = backend.pool.acquire(threads * 4);
  ops.fill(backend, out, threads, 99);
  ops.fmaProbe(backend, out, threads, iterations, m, a);
  const got = await downloadBuffer(backend, out, threads);
  const expected = new Float64Array(threads);
  for (let t = 0; t < threads; t++) {
    const start = (t % 7 + 1) * 0.01;
    for (let k = 0; k < FMA_PROBE_CHAINS; k++) {
      let acc = start * (k + 1);
      for (let i = 0; i < iterations; i++) acc = acc * m + a;
      expected[t] += 4 * acc;
    }
  }
  assertClose(got, expected, "fmaProbe", { atol: 1e-4, rtol: 1e-5 });
  backend.pool.release(out);
});
