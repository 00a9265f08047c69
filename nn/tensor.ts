/**
 * Tensor and the tape: every op that sees an input requiring grad records a Node (its inputs,
 * the tensors it saved, and a backward closure). `backward()` walks the nodes in reverse
 * topological order, iteratively, so shared subgraphs such as residual branches are visited once.
 */

import * as ops from "../kernels/ops.ts";
import type { Device } from "./device.ts";

/** A reference-counted GPU buffer; views (reshape) and saved-for-backward handles share it. */
export class Storage {
  readonly buffer: GPUBuffer;
  readonly #device: Device;
  #refs = 1;

  constructor(device: Device, buffer: GPUBuffer) {
    this.#device = device;
    this.buffer = buffer;
  }

  /** Add a reference. */
  retain(): this {
    this.#refs++;
    return this;
  }

  /** Whether more than one tensor holds this storage (writing it in place would change them all). */
  get shared(): boolean {
    return this.#refs > 1;
  }

  /** Drop a reference; the buffer returns to the pool at zero. */
  release(): void {
    if (--this.#refs === 0) {
      this.#device.backend.pool.release(this.buffer);
      this.#releaseStatistics();
    }
  }

  #statistics: ops.ChannelStatistics | null = null;

  /**
   * Attach the data's batch-norm statistics partials, formed by the op that wrote the data (a conv
   * whose output feeds a training-mode batch norm: kernels/ops.ts conv2dForward's `statistics`);
   * they go back to the pool with the storage if nothing takes them.
   */
  attachStatistics(statistics: ops.ChannelStatistics): void {
    this.#releaseStatistics();
    this.#statistics = statistics;
  }

  /** The attached statistics partials, detached: the caller gives their buffer back to the pool. */
  takeStatistics(): ops.ChannelStatistics | null {
    const statistics = this.#statistics;
    this.#statistics = null;
    return statistics;
  }

  /** Run `use` with the attached statistics partials (or null), then give them back to the pool. */
  useStatistics<T>(use: (statistics: ops.ChannelStatistics | null) => T): T {
    const statistics = this.takeStatistics();
    try {
      return use(statistics);
    } finally {
      if (statistics) this.#device.backend.pool.release(statistics.buffer);
    }
  }

  #releaseStatistics(): void {
    const statistics = this.takeStatistics();
    if (statistics) this.#device.backend.pool.release(statistics.buffer);
  }
}

/**
 * The backward function of one recorded op: upstream gradient in, one gradient per input out. It
 * may take an input's gradient summed so far from `pending` and return it with its own added in
 * place (one pass instead of a second tensor and an add).
 */
export type BackwardFn = (grad: Tensor, pending: PendingGradients) => (Tensor | null)[];

/** The gradients already summed for a node's inputs, as its backward runs. */
export interface PendingGradients {
  /**
   * Input k's gradient so far, taken from the engine: null when there is none, when input k is a
   * leaf, or when its memory is shared with another tensor. A backward that takes one must add its
   * own gradient of input k into it and return it as input k's.
   */
  claim(k: number): Tensor | null;
}

/** No pending gradients (a node run outside the engine's loop, or claims turned off). */
const NO_PENDING: PendingGradients = { claim: () => null };

let pendingClaims = true;

/**
 * Tests and benchmarks: let backward functions take pending gradients (true, the default) or not
 * (every gradient then gets its own tensor and the engine adds them), to compare the two.
 */
export function setPendingGradientClaims(enabled: boolean): void {
  pendingClaims = enabled;
}

/** One recorded op on the tape. */
export class Node {
  /** Op name, for error messages and debugging. */
  readonly name: string;
  /** The op's inputs (null where an input is not a tensor). */
  readonly inputs: readonly (Tensor | null)[];
  #backward: BackwardFn | null;
  #saved: Tensor[];

  constructor(
    name: string,
    inputs: readonly (Tensor | null)[],
    backward: BackwardFn,
    saved: Tensor[],
  ) {
    this.name = name;
    this.inputs = inputs;
    this.#backward = backward;
    this.#saved = saved;
  }

  /** Whether backward already ran (or the graph was released). */
  get released(): boolean {
    return this.#backward === null;
  }

  /** Run the backward closure once, then drop what it saved. */
  runBackward(grad: Tensor, pending: PendingGradients = NO_PENDING): (Tensor | null)[] {
    if (!this.#backward) {
      throw new Error(
        `backward through "${this.name}" a second time: its saved tensors were already freed`,
      );
    }
    const grads = this.#backward(grad, pending);
    this.release();
    return grads;
  }

  /** Free the saved tensors without running backward. */
  release(): void {
    for (const t of this.#saved) t.dispose();
    this.#saved = [];
    this.#backward = null;
  }
}

// ---- grad mode and scopes -------------------------------------------------------------------

let gradEnabled = true;

interface Scope {
  tensors: Set<Tensor>;
  nodes: Node[];
}
const scopes: Scope[] = [];

/** Whether ops record the tape right now. */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/**
 * Run `fn` without recording the tape (inference, metrics, optimizer updates). Works with async
 * functions: recording resumes when the returned promise settles.
 */
export function noGrad<T>(fn: () => T): T {
  const previous = gradEnabled;
  gradEnabled = false;
  let result: T;
  try {
    result = fn();
  } catch (error) {
    gradEnabled = previous;
    throw error;
  }
  if (result instanceof Promise) {
    return result.finally(() => {
      gradEnabled = previous;
    }) as T;
  }
  gradEnabled = previous;
  return result;
}

/** Collect the tensors reachable from a value (tensor, array, or plain object of them). */
function collectTensors(value: unknown, into: Set<Tensor>, depth = 0): void {
  if (value instanceof Tensor) into.add(value);
  else if (depth < 4 && Array.isArray(value)) {
    for (const v of value) collectTensors(v, into, depth + 1);
  } else if (depth < 4 && value && typeof value === "object" && !ArrayBuffer.isView(value)) {
    for (const v of Object.values(value)) collectTensors(v, into, depth + 1);
  }
}

function endScope(scope: Scope, result: unknown): void {
  const kept = new Set<Tensor>();
  collectTensors(result, kept);
  const parent = scopes[scopes.length - 1];
  for (const t of scope.tensors) {
    if (kept.has(t)) parent?.tensors.add(t);
    else t.dispose();
  }
  // Graph nodes no kept tensor can reach will never see backward: free what they saved.
  const reachable = new Set<Node>();
  const stack = [...kept].map((t) => t.node).filter((n): n is Node => n !== null);
  while (stack.length) {
    const node = stack.pop()!;
    if (reachable.has(node)) continue;
    reachable.add(node);
    for (const input of node.inputs) if (input?.node) stack.push(input.node);
  }
  for (const node of scope.nodes) {
    if (reachable.has(node)) parent?.nodes.push(node);
    else node.release();
  }
}

/**
 * Run `fn` and dispose every tensor it created except those in its result (a tensor, or arrays /
 * objects of tensors); graph nodes the result cannot reach are freed too. Async functions are
 * supported; keep one async tidy in flight at a time, since the scope is global.
 */
export function tidy<T>(fn: () => T): T {
  const scope: Scope = { tensors: new Set(), nodes: [] };
  scopes.push(scope);
  const finish = (result: unknown) => {
    const at = scopes.lastIndexOf(scope);
    if (at >= 0) scopes.splice(at, 1);
    endScope(scope, result);
  };
  let result: T;
  try {
    result = fn();
  } catch (error) {
    finish(undefined);
    throw error;
  }
  if (result instanceof Promise) {
    return result.then(
      (value) => {
        finish(value);
        return value;
      },
      (error) => {
        finish(undefined);
        throw error;
      },
    ) as T;
  }
  finish(result);
  return result;
}

/** Exempt tensors from the enclosing tidy scopes (for example parameters created inside one). */
export function keep<T extends Tensor>(tensor: T): T {
  for (const scope of scopes) scope.tensors.delete(tensor);
  return tensor;
}

// ---- Tensor ---------------------------------------------------------------------------------

/** Validate a shape: non-negative integers. Returns the element count. */
export function shapeSize(shape: readonly number[], what = "shape"): number {
  let size = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new Error(`${what} [${shape.join(", ")}] must hold non-negative integers`);
    }
    size *= d;
  }
  return size;
}

/** A float32, contiguous, row-major (NCHW for images) tensor living on the GPU. */
export class Tensor {
  /** The device that owns the data. */
  readonly device: Device;
  /** Dimensions, outermost first. */
  readonly shape: readonly number[];
  /** Number of elements. */
  readonly size: number;
  /** Whether gradients flow to this tensor. */
  requiresGrad: boolean;
  /** Accumulated gradient of a leaf tensor after `backward()`; null until then. */
  grad: Tensor | null = null;
  /** The op that produced this tensor, when recorded on the tape. */
  node: Node | null = null;
  #storage: Storage | null;

  /** Internal: tensors are made by Device methods and ops. */
  constructor(device: Device, storage: Storage, shape: readonly number[], requiresGrad = false) {
    this.device = device;
    this.shape = Object.freeze([...shape]);
    this.size = shapeSize(shape);
    this.#storage = storage;
    this.requiresGrad = requiresGrad;
    scopes[scopes.length - 1]?.tensors.add(this);
  }

  /** Number of dimensions. */
  get rank(): number {
    return this.shape.length;
  }

  /** Whether `dispose()` was called. */
  get isDisposed(): boolean {
    return this.#storage === null;
  }

  /** The GPU buffer (throws after dispose). */
  get buffer(): GPUBuffer {
    return this.storage.buffer;
  }

  /** The shared storage (throws after dispose). */
  get storage(): Storage {
    if (!this.#storage) throw new Error(`tensor [${this.shape.join(", ")}] used after dispose()`);
    return this.#storage;
  }

  /** Byte length of the data. */
  get byteLength(): number {
    return this.size * 4;
  }

  /** Copy the data to the CPU. Submits pending GPU work. */
  async toArray(): Promise<Float32Array> {
    if (this.size === 0) return new Float32Array(0);
    return new Float32Array(await this.device.backend.read(this.buffer, this.byteLength));
  }

  /** The single value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) {
      throw new Error(`item() needs a one-element tensor, got shape [${this.shape.join(", ")}]`);
    }
    return (await this.toArray())[0];
  }

  /** A new handle on the same storage (no grad, no tape); dispose it independently. */
  share(shape: readonly number[] = this.shape): Tensor {
    return new Tensor(this.device, this.storage.retain(), shape);
  }

  /** A tensor that shares storage but is cut from the tape (like torch's detach()). */
  detach(): Tensor {
    return this.share();
  }

  /** Free the GPU memory (idempotent). Gradients held in `grad` are disposed too. */
  dispose(): void {
    if (this.#storage) {
      this.#storage.release();
      this.#storage = null;
    }
    this.grad?.dispose();
    this.grad = null;
  }

  /**
   * Reverse-mode autodiff from this tensor. Without `grad` the tensor must hold one element
   * (a loss); leaf tensors with requiresGrad accumulate into `.grad`.
   */
  backward(grad?: Tensor): Promise<void> {
    runBackward(this, grad);
    return Promise.resolve();
  }

  /** A readable summary, e.g. `Tensor[64, 3, 64, 64]`. */
  toString(): string {
    return `Tensor[${this.shape.join(", ")}]${this.requiresGrad ? " (requires grad)" : ""}`;
  }
}

/** Record an op on the tape if grad mode is on and any input requires grad. */
export function record(
  output: Tensor,
  name: string,
  inputs: readonly (Tensor | null)[],
  saved: Tensor[],
  backward: BackwardFn,
): Tensor {
  if (!gradEnabled || !inputs.some((t) => t?.requiresGrad)) {
    for (const t of saved) t.dispose();
    return output;
  }
  // Saved handles are internal: keep them out of tidy scopes, the node frees them.
  for (const t of saved) for (const scope of scopes) scope.tensors.delete(t);
  const node = new Node(name, inputs, backward, saved);
  output.node = node;
  output.requiresGrad = true;
  scopes[scopes.length - 1]?.nodes.push(node);
  return output;
}

/** a + b into a new tensor (used to accumulate gradients). */
function addTensors(a: Tensor, b: Tensor): Tensor {
  const out = a.device.empty(a.shape);
  ops.binary(a.device.backend, "add", a.buffer, b.buffer, out.buffer, a.size);
  return out;
}

function runBackward(root: Tensor, seed?: Tensor): void {
  if (!root.requiresGrad) {
    throw new Error(
      "backward() on a tensor that does not require grad (no input needs a gradient)",
    );
  }
  if (!seed && root.size !== 1) {
    throw new Error(
      `backward() without a gradient needs a one-element (scalar) tensor, got shape [${
        root.shape.join(", ")
      }]`,
    );
  }
  if (seed && seed.shape.join() !== root.shape.join()) {
    throw new Error(
      `backward(grad): grad shape [${seed.shape.join(", ")}] differs from [${
        root.shape.join(", ")
      }]`,
    );
  }
  const device = root.device;
  noGrad(() => {
    const rootGrad = seed ? seed.share() : device.full(root.shape, 1);
    keep(rootGrad);
    if (!root.node) {
      accumulateLeaf(root, rootGrad);
      return;
    }
    // Iterative post-order DFS: each node after all nodes that consume its output.
    const order: Node[] = [];
    const visited = new Set<Node>();
    const stack: [Node, number][] = [[root.node, 0]];
    while (stack.length) {
      const top = stack[stack.length - 1];
      const [node, next] = top;
      if (next === 0 && visited.has(node)) {
        stack.pop();
        continue;
      }
      visited.add(node);
      if (next < node.inputs.length) {
        top[1]++;
        const child = node.inputs[next]?.node;
        if (child && !visited.has(child)) stack.push([child, 0]);
      } else {
        stack.pop();
        order.push(node);
      }
    }
    const grads = new Map<Node, Tensor>([[root.node, rootGrad]]);
    for (let i = order.length - 1; i >= 0; i--) {
      const node = order[i];
      const grad = grads.get(node);
      if (!grad) {
        node.release();
        continue;
      }
      grads.delete(node);
      // Inputs whose summed gradient the backward took, to add its own into (PendingGradients).
      const claimed = new Set<number>();
      const pending: PendingGradients = {
        claim(k) {
          const input = node.inputs[k];
          const previous = input?.node && input.requiresGrad ? grads.get(input.node) : undefined;
          if (!previous || previous.storage.shared) return null;
          grads.delete(input!.node!);
          claimed.add(k);
          return previous;
        },
      };
      const inputGrads = node.runBackward(grad, pendingClaims ? pending : NO_PENDING);
      grad.dispose();
      node.inputs.forEach((input, k) => {
        const g = inputGrads[k];
        if (claimed.has(k)) {
          // The pending gradient, with this node's added: it replaces, nothing is added.
          if (!g) {
            throw new Error(`backward of "${node.name}" took input ${k}'s gradient and lost it`);
          }
          grads.set(input!.node!, keep(g));
          return;
        }
        if (!g) return;
        keep(g);
        if (!input || !input.requiresGrad) {
          g.dispose();
        } else if (input.node) {
          const previous = grads.get(input.node);
          if (previous) {
            grads.set(input.node, keep(addTensors(previous, g)));
            previous.dispose();
            g.dispose();
          } else grads.set(input.node, g);
        } else accumulateLeaf(input, g);
      });
    }
    for (const g of grads.values()) g.dispose();
  });
}

function accumulateLeaf(leaf: Tensor, g: Tensor): void {
  if (g.shape.join() !== leaf.shape.join()) {
    // Ops return gradients shaped like their inputs; a mismatch is an engine bug.
    throw new Error(`gradient shape [${g.shape}] does not match tensor [${leaf.shape}]`);
  }
  if (leaf.grad) {
    const sum = keep(addTensors(leaf.grad, g));
    leaf.grad.dispose();
    g.dispose();
    leaf.grad = sum;
  } else leaf.grad = g;
}
