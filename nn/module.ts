/**
 * The Module base: named parameters, buffers and children, train/eval mode, and state dicts whose
 * names are exactly what PyTorch's state_dict() would produce for the same structure.
 */

import type { Tensor } from "./tensor.ts";

/** A non-float tensor kept on the CPU (e.g. BatchNorm's int64 num_batches_tracked). */
export interface HostTensor {
  readonly dtype: "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";
  readonly shape: readonly number[];
  readonly data: BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;
}

/** One entry of a state dict: a float GPU tensor, or a host tensor for integer dtypes. */
export type StateValue = Tensor | HostTensor;
/** Name -> value, in PyTorch's state_dict order. */
export type StateDict = Map<string, StateValue>;

/** Whether a state value is a host (integer) tensor. */
export function isHostTensor(value: StateValue): value is HostTensor {
  return "dtype" in value && !("device" in value);
}

/** A host-side state entry a module keeps as a plain number (e.g. num_batches_tracked). */
export interface HostState {
  get(): HostTensor;
  set(value: HostTensor): void;
}

/** What loadStateDict found besides the matched entries. */
export interface LoadResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

/** Base class of layers and models. */
export abstract class Module {
  /** Training mode (BatchNorm uses batch statistics); switch with train() / eval(). */
  training = true;
  readonly #parameters = new Map<string, Tensor>();
  readonly #buffers = new Map<string, Tensor>();
  readonly #hostState = new Map<string, HostState>();
  readonly #children = new Map<string, Module>();

  /** Register a trainable tensor under `name`. */
  protected registerParameter(name: string, tensor: Tensor): Tensor {
    tensor.requiresGrad = true;
    this.#parameters.set(name, tensor);
    return tensor;
  }

  /** Register a non-trainable GPU tensor (running statistics) under `name`. */
  protected registerBuffer(name: string, tensor: Tensor): Tensor {
    this.#buffers.set(name, tensor);
    return tensor;
  }

  /** Register a host-side state entry (integer buffers) under `name`. */
  protected registerHostState(name: string, state: HostState): void {
    this.#hostState.set(name, state);
  }

  /** Register a child module under `name`. */
  registerModule<M extends Module>(name: string, module: M): M {
    this.#children.set(name, module);
    return module;
  }

  /** Child modules in registration order. */
  children(): [string, Module][] {
    return [...this.#children];
  }

  /** All trainable tensors, recursively, in registration order (each once). */
  parameters(): Tensor[] {
    return [...new Set(this.namedParameters().map(([, t]) => t))];
  }

  /** [name, tensor] for every trainable tensor, named as in PyTorch. */
  namedParameters(prefix = ""): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [name, t] of this.#parameters) out.push([prefix + name, t]);
    for (const [name, child] of this.#children) {
      out.push(...child.namedParameters(`${prefix}${name}.`));
    }
    return out;
  }

  /** Number of trainable scalars. */
  parameterCount(): number {
    return this.parameters().reduce((n, t) => n + t.size, 0);
  }

  /**
   * Parameters, buffers and host state, recursively, in PyTorch's order (a module's own
   * parameters, then its buffers, then each child). Values are the live tensors, not copies.
   */
  stateDict(prefix = ""): StateDict {
    const out: StateDict = new Map();
    for (const [name, t] of this.#parameters) out.set(prefix + name, t);
    for (const [name, t] of this.#buffers) out.set(prefix + name, t);
    for (const [name, s] of this.#hostState) out.set(prefix + name, s.get());
    for (const [name, child] of this.#children) {
      for (const [k, v] of child.stateDict(`${prefix}${name}.`)) out.set(k, v);
    }
    return out;
  }

  /**
   * Copy values from a state dict into this module's tensors. Shapes must match exactly; an error
   * names the first tensor that does not. With `strict` (default true), missing or unexpected keys
   * are errors too; otherwise they are returned.
   */
  loadStateDict(
    dict: ReadonlyMap<string, StateValue>,
    options: { strict?: boolean } = {},
  ): LoadResult {
    const strict = options.strict ?? true;
    const own = this.#stateTargets("");
    const missingKeys = [...own.keys()].filter((k) => !dict.has(k));
    const unexpectedKeys = [...dict.keys()].filter((k) => !own.has(k));
    if (strict && missingKeys.length) {
      throw new Error(
        `loadStateDict: "${missingKeys[0]}" is missing from the checkpoint` +
          (missingKeys.length > 1 ? ` (and ${missingKeys.length - 1} more)` : "") +
          " — is it a checkpoint of another model or size?",
      );
    }
    if (strict && unexpectedKeys.length) {
      throw new Error(
        `loadStateDict: the checkpoint has "${unexpectedKeys[0]}", which this model does not` +
          (unexpectedKeys.length > 1 ? ` (and ${unexpectedKeys.length - 1} more)` : ""),
      );
    }
    // Validate everything before copying anything, so a bad checkpoint leaves the model as it was.
    for (const [name, target] of own) {
      const value = dict.get(name);
      if (!value) continue;
      const expected = "device" in target ? target.shape : target.get().shape;
      if (value.shape.length !== expected.length || value.shape.some((d, i) => d !== expected[i])) {
        throw new Error(
          `loadStateDict: "${name}" has shape [${value.shape.join(", ")}] in the checkpoint, ` +
            `the model expects [${expected.join(", ")}]`,
        );
      }
      if ("device" in target && isHostTensor(value)) {
        throw new Error(
          `loadStateDict: "${name}" is ${value.dtype} in the checkpoint, expected a float`,
        );
      }
    }
    for (const [name, target] of own) {
      const value = dict.get(name);
      if (!value) continue;
      if ("device" in target) {
        const source = value as Tensor;
        if (source === target) continue;
        target.device.backend.copy(source.buffer, 0, target.buffer, 0, target.byteLength);
      } else if (isHostTensor(value)) {
        target.set(value);
      } else {
        throw new Error(`loadStateDict: "${name}" must be an integer tensor, got a float tensor`);
      }
    }
    return { missingKeys, unexpectedKeys };
  }

  #stateTargets(prefix: string): Map<string, Tensor | HostState> {
    const out = new Map<string, Tensor | HostState>();
    for (const [name, t] of this.#parameters) out.set(prefix + name, t);
    for (const [name, t] of this.#buffers) out.set(prefix + name, t);
    for (const [name, s] of this.#hostState) out.set(prefix + name, s);
    for (const [name, child] of this.#children) {
      for (const [k, v] of child.#stateTargets(`${prefix}${name}.`)) out.set(k, v);
    }
    return out;
  }

  /** Set training mode on this module and all children. */
  train(mode = true): this {
    this.training = mode;
    for (const child of this.#children.values()) child.train(mode);
    return this;
  }

  /** Set evaluation mode (running statistics in BatchNorm). */
  eval(): this {
    return this.train(false);
  }

  /** Free every parameter and buffer. */
  dispose(): void {
    for (const t of this.#parameters.values()) t.dispose();
    for (const t of this.#buffers.values()) t.dispose();
    for (const child of this.#children.values()) child.dispose();
  }
}
