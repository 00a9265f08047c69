/** Optimizers. */

import * as ops from "../kernels/ops.ts";
import type { StateValue } from "./module.ts";
import type { Tensor } from "./tensor.ts";

/** Options of {@link Adam}, with torch.optim.Adam's defaults. */
export interface AdamOptions {
  /** Learning rate, default 1e-3. */
  lr?: number;
  /** Decay of the first and second moment estimates, default [0.9, 0.999]. */
  betas?: readonly [number, number];
  /** Added to the denominator, default 1e-8. */
  eps?: number;
  /** L2 penalty added to the gradient (not decoupled, as torch's Adam), default 0. */
  weightDecay?: number;
  /**
   * Update up to 8 parameters per dispatch (true, the default; torch's `foreach`), or one dispatch
   * per parameter. The numbers are the same.
   */
  foreach?: boolean;
}

interface AdamState {
  m: Tensor;
  v: Tensor;
  step: number;
}

/**
 * Adam (Kingma & Ba), numerically as torch.optim.Adam (amsgrad off): fused WGSL kernels update
 * the moments and the parameters in place, up to 8 parameters per dispatch (kernels/ops.ts adamMulti).
 */
export class Adam {
  /** The parameters being optimized. */
  readonly params: readonly Tensor[];
  /** Learning rate; may be changed between steps (schedules). */
  lr: number;
  readonly betas: readonly [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  readonly foreach: boolean;
  readonly #state = new Map<Tensor, AdamState>();

  constructor(params: Iterable<Tensor>, options: AdamOptions = {}) {
    this.params = [...params];
    this.lr = options.lr ?? 1e-3;
    this.betas = options.betas ?? [0.9, 0.999];
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0;
    this.foreach = options.foreach ?? true;
    const [beta1, beta2] = this.betas;
    if (!(this.lr >= 0)) throw new Error(`Adam: invalid learning rate ${this.lr}`);
    if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) {
      throw new Error(`Adam: betas must be in [0, 1), got [${this.betas}]`);
    }
    if (!(this.eps >= 0)) throw new Error(`Adam: invalid eps ${this.eps}`);
    if (!(this.weightDecay >= 0)) throw new Error(`Adam: invalid weightDecay ${this.weightDecay}`);
    for (const p of this.params) {
      if (!p.requiresGrad) throw new Error(`Adam: parameter ${p} does not require grad`);
    }
  }

  /**
   * Apply one update to every parameter that has a gradient, then submit the step's recorded
   * work (forward, backward, update) as one command buffer, so its temporaries can be reused.
   */
  step(): void {
    // Parameters that share a device and a step count update together (a few dispatches).
    const groups = new Map<string, { backend: ops.AdamTensor[]; step: number; p: Tensor }>();
    const devices: Tensor["device"][] = [];
    for (const p of this.params) {
      if (!p.grad) continue;
      let state = this.#state.get(p);
      if (!state) {
        state = { m: p.device.zeros(p.shape), v: p.device.zeros(p.shape), step: 0 };
        this.#state.set(p, state);
      }
      state.step++;
      let deviceIndex = devices.indexOf(p.device);
      if (deviceIndex < 0) deviceIndex = devices.push(p.device) - 1;
      const key = this.foreach ? `${deviceIndex}:${state.step}` : `${groups.size}`;
      let group = groups.get(key);
      if (!group) {
        group = { backend: [], step: state.step, p };
        groups.set(key, group);
      }
      group.backend.push({
        param: p.buffer,
        grad: p.grad.buffer,
        m: state.m.buffer,
        v: state.v.buffer,
        n: p.size,
      });
    }
    for (const group of groups.values()) {
      ops.adamMulti(group.p.device.backend, group.backend, {
        lr: this.lr,
        beta1: this.betas[0],
        beta2: this.betas[1],
        eps: this.eps,
        weightDecay: this.weightDecay,
        step: group.step,
      });
    }
    const device = this.params[0]?.device;
    // The updated weights' packed conv filters, packed now and submitted with the update: a conv
    // that packs its filters in its own submit is slower on llvmpipe (kernels/pack_cache.ts).
    if (device) ops.refreshPackedFilters(device.backend);
    device?.flush();
  }

  /** Drop all gradients (torch's zero_grad(set_to_none=True)). */
  zeroGrad(): void {
    for (const p of this.params) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  /** Moment estimates and step count of a parameter (for checkpoints), if it has stepped. */
  stateOf(param: Tensor): { m: Tensor; v: Tensor; step: number } | undefined {
    return this.#state.get(param);
  }

  /**
   * The optimizer state keyed by parameter names (`<name>.exp_avg`, `<name>.exp_avg_sq`,
   * `<name>.step`), for checkpoints; `named` maps the names to this optimizer's parameters.
   */
  stateDict(named: readonly [string, Tensor][]): Map<string, StateValue> {
    const out = new Map<string, StateValue>();
    for (const [name, p] of named) {
      const s = this.#state.get(p);
      if (!s) continue;
      out.set(`${name}.exp_avg`, s.m);
      out.set(`${name}.exp_avg_sq`, s.v);
      out.set(`${name}.step`, { dtype: "I64", shape: [], data: BigInt64Array.of(BigInt(s.step)) });
    }
    return out;
  }

  /** Restore state written by {@link stateDict} (moments are copied; shapes must match). */
  loadStateDict(named: readonly [string, Tensor][], dict: ReadonlyMap<string, StateValue>): void {
    for (const [name, p] of named) {
      const m = dict.get(`${name}.exp_avg`);
      const v = dict.get(`${name}.exp_avg_sq`);
      const step = dict.get(`${name}.step`);
      if (!m || !v || !step) continue;
      for (const [key, t] of [["exp_avg", m], ["exp_avg_sq", v]] as const) {
        if (!("device" in t) || t.shape.join() !== p.shape.join()) {
          throw new Error(
            `Adam.loadStateDict: "${name}.${key}" does not match parameter [${p.shape}]`,
          );
        }
      }
      let state = this.#state.get(p);
      if (!state) {
        state = { m: p.device.zeros(p.shape), v: p.device.zeros(p.shape), step: 0 };
        this.#state.set(p, state);
      }
      const backend = p.device.backend;
      backend.copy((m as Tensor).buffer, 0, state.m.buffer, 0, p.byteLength);
      backend.copy((v as Tensor).buffer, 0, state.v.buffer, 0, p.byteLength);
      state.step = Number((step as { data: ArrayLike<bigint | number> }).data[0]);
    }
  }

  /** Free the moment buffers. */
  dispose(): void {
    for (const s of this.#state.values()) {
      s.m.dispose();
      s.v.dispose();
    }
    this.#state.clear();
  }
}
