/**
 * Environment variables the kernels read (VA_AUTOTUNE, VA_CONV_VARIANT, VA_GEMM_WIDE_TILE,
 * DENO_WEBGPU_BACKEND): a program embedding the engine without env permission gets the defaults
 * instead of a PermissionDenied error.
 */

/** The variable's value, or undefined when it is unset or cannot be read. */
export function envVar(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}
