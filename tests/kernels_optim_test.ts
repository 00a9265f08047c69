/**
 * Multi-tensor Adam (kernels/ops.ts adamMulti, several parameters per dispatch) against the
 * float64 torch-order reference: tensors of odd and vec4 sizes, more tensors than one dispatch
 * takes, large ones that update alone on CPU rasterizers, and, through optim.Adam, parameters at
 * different step counts (updated in separate groups).
 */

import assert from "node:assert/strict";
import { optim } from "../mod.ts";
import * as ops from "../kernels/ops.ts";
import * as ref from "./reference.ts";
import { assertClose, downloadBuffer, randomArray, testDevice, uploadBuffer } from "./helpers.ts";

const device = await testDevice();
const backend = device.backend;

Deno.test("adamMulti: 15 tensors (odd and vec4 sizes, several dispatches, some alone) match the reference", async () => {
  // 4100 and 2049: at least ops.ADAM_ALONE_FROM_CPU, so on CPU rasterizers they update alone.
  const sizes = [1, 3, 4, 8, 1000, 4100, 1028, 7, 12, 300, 2049, 2, 260, 4, 513];
  assert.ok(sizes.some((n) => n >= ops.ADAM_ALONE_FROM_CPU && n % 4 === 0));
  assert.ok(sizes.some((n) => n >= ops.ADAM_ALONE_FROM_CPU && n % 4 !== 0));
  const h = { lr: 0.05, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1 };
  const state = sizes.map((n, k) => ({
    p: Float64Array.from(randomArray(n, 100 + k)),
    m: new Float64Array(n),
    v: new Float64Array(n),
  }));
  const buffers = sizes.map((n, k) => ({
    param: uploadBuffer(backend, Float32Array.from(state[k].p)),
    grad: backend.pool.acquire(Math.max(4, n * 4)),
    m: uploadBuffer(backend, new Float32Array(n)),
    v: uploadBuffer(backend, new Float32Array(n)),
    n,
  }));
  for (let step = 1; step <= 3; step++) {
    const grads = sizes.map((n, k) => randomArray(n, 200 + 10 * step + k));
    buffers.forEach((t, k) => backend.write(t.grad, grads[k]));
    ops.adamMulti(backend, buffers, { ...h, step });
    sizes.forEach((_, k) => {
      const s = state[k];
      Object.assign(
        s,
        ref.adamStep(s.p, grads[k], s.m, s.v, step, h.lr, h.beta1, h.beta2, h.eps, h.weightDecay),
      );
    });
    const [ps, ms, vs] = await Promise.all(
      (["param", "m", "v"] as const).map((key) =>
        Promise.all(buffers.map((t) => downloadBuffer(backend, t[key], t.n)))
      ),
    );
    sizes.forEach((n, k) => {
      const tol = { atol: 1e-6, rtol: 1e-5 };
      assertClose(ps[k], state[k].p, `step ${step} tensor ${k} (${n}) param`, tol);
      assertClose(ms[k], state[k].m, `step ${step} tensor ${k} (${n}) m`, tol);
      assertClose(vs[k], state[k].v, `step ${step} tensor ${k} (${n}) v`, tol);
    });
  }
  for (const t of buffers) for (const b of [t.param, t.grad, t.m, t.v]) backend.pool.release(b);
  backend.flush();
});

Deno.test("optim.Adam groups parameters by step count", async () => {
  const sizes = [5, 8, 12, 3];
  const p0 = sizes.map((n, k) => randomArray(n, 300 + k));
  const params = sizes.map((n, k) => device.tensor(p0[k], [n], { requiresGrad: true }));
  const opt = new optim.Adam(params, { lr: 0.05, betas: [0.8, 0.95], eps: 1e-6 });
  const expected = sizes.map((n, k) => ({
    p: Float64Array.from(p0[k]),
    m: new Float64Array(n),
    v: new Float64Array(n),
    step: 0,
  }));
  for (let round = 0; round < 3; round++) {
    params.forEach((param, k) => {
      param.grad?.dispose();
      param.grad = null;
      // Parameter 1 skips the first round, parameter 3 the second: step counts diverge.
      if ((k === 1 && round === 0) || (k === 3 && round === 1)) return;
      const g = randomArray(sizes[k], 400 + 10 * round + k);
      param.grad = device.tensor(g, [sizes[k]]);
      const e = expected[k];
      e.step++;
      Object.assign(e, ref.adamStep(e.p, g, e.m, e.v, e.step, 0.05, 0.8, 0.95, 1e-6, 0));
    });
    opt.step();
    const values = await Promise.all(params.map((p) => p.toArray()));
    values.forEach((value, k) =>
      assertClose(value, expected[k].p, `round ${round} param ${k}`, { atol: 1e-6, rtol: 1e-5 })
    );
  }
  opt.zeroGrad();
  opt.dispose();
  for (const p of params) p.dispose();
});
