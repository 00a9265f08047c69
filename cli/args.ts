/** Command-line helpers shared by the CLI commands (node:util's parseArgs; JSR is unreachable). */

import { parseArgs } from "node:util";

/** A command-line mistake: printed without a stack trace, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Flag declarations in parseArgs' format. */
export type FlagSpec = Record<
  string,
  { type: "string" | "boolean"; short?: string; multiple?: boolean }
>;

/** parseArgs (strict) with messages that name the flag. */
export function parseFlags(
  args: string[],
  options: FlagSpec,
): { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] } {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true }) as never;
  } catch (error) {
    const message = (error as Error).message.replace(/^Unknown option/, "unknown flag");
    throw new UsageError(`${message} (see --help)`);
  }
}

/** A non-negative integer flag value, or an error naming the flag. */
export function intFlag(name: string, value: unknown): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (typeof value !== "string" || value.trim() === "" || !Number.isInteger(n) || n < 0) {
    throw new UsageError(`--${name} must be a non-negative integer, got "${value}"`);
  }
  return n;
}
