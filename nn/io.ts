/**
 * State dicts to and from safetensors files, the format PyTorch and Hugging Face users share.
 * Float tensors (F32, F16, BF16, F64) become f32 GPU tensors; integer tensors (such as BatchNorm's
 * int64 num_batches_tracked) stay on the host with their dtype.
 */

import type { Device } from "./device.ts";
import {
  type HostTensor,
  isHostTensor,
  type LoadResult,
  type Module,
  type StateDict,
  type StateValue,
} from "./module.ts";
import {
  readSafetensorsFile,
  type SafetensorsTensorInput,
  writeSafetensorsFile,
} from "./safetensors.ts";

/** Read a safetensors file into a state dict on `device` (header order kept). */
export async function readSafetensors(device: Device, path: string): Promise<StateDict> {
  const { tensors } = await readSafetensorsFile(path);
  const out: StateDict = new Map();
  for (const [name, entry] of tensors) {
    const data = entry.data;
    if (data instanceof Float32Array || data instanceof Float64Array) {
      const values = data instanceof Float32Array ? data : Float32Array.from(data);
      for (let i = 0; i < values.length; i++) {
        if (!Number.isFinite(values[i])) {
          throw new Error(`${path}: tensor "${name}" holds ${values[i]} at element ${i}`);
        }
      }
      out.set(name, device.tensor(values, entry.shape));
    } else {
      out.set(name, {
        dtype: entry.dtype as HostTensor["dtype"],
        shape: entry.shape,
        data,
      } as HostTensor);
    }
  }
  return out;
}

/** The safetensors input for one state value (reads GPU tensors back). */
async function toSafetensorsInput(value: StateValue): Promise<SafetensorsTensorInput> {
  if (isHostTensor(value)) return { dtype: value.dtype, shape: value.shape, data: value.data };
  return { dtype: "F32", shape: value.shape, data: await value.toArray() };
}

/** Write a state dict to `path` atomically (temp file, then rename). */
export async function writeSafetensors(
  path: string,
  state: ReadonlyMap<string, StateValue>,
  metadata: Record<string, string> = {},
): Promise<void> {
  const entries = [...state];
  const values = await Promise.all(entries.map(([, v]) => toSafetensorsInput(v)));
  const tensors = new Map<string, SafetensorsTensorInput>();
  entries.forEach(([name], i) => tensors.set(name, values[i]));
  await writeSafetensorsFile(path, tensors, metadata);
}

/** Dispose the GPU tensors of a state dict read with {@link readSafetensors}. */
export function disposeStateDict(state: StateDict): void {
  for (const value of state.values()) if (!isHostTensor(value)) value.dispose();
}

/**
 * Read a safetensors file into a module's own tensors (`loadStateDict`, strict by default) on the
 * module's device; the tensors read are freed afterwards, also when the load fails.
 */
export async function loadSafetensorsInto(
  module: Module,
  path: string,
  options: { strict?: boolean } = {},
): Promise<LoadResult> {
  const first = module.parameters()[0];
  if (!first) throw new Error(`loadSafetensorsInto ${path}: the module has no parameters`);
  const state = await readSafetensors(first.device, path);
  try {
    return module.loadStateDict(state, options);
  } finally {
    disposeStateDict(state);
  }
}
