/** File-system helpers shared by the readers and writers. */
import { DataError } from "./errors.ts";
import { errorText } from "./image.ts";

/** Throws a `DataError` naming `what` unless `path` is an existing directory. */
export async function requireDirectory(path: string, what: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch {
    throw new DataError(`${what} not found`, { file: path });
  }
  if (!info.isDirectory) throw new DataError(`${what} is not a directory`, { file: path });
}

/** Reads a UTF-8 text file, turning a missing file into a `DataError` naming `what`. */
export async function readText(path: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new DataError(`${what} not found`, { file: path });
    }
    throw new DataError(`cannot read ${what} (${errorText(error)})`, { file: path });
  }
}

/** Names of the entries of a directory, sorted, filtered by kind. */
export async function listDirectory(
  path: string,
  kind: "file" | "directory",
): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(path)) {
    if (kind === "file" ? entry.isFile : entry.isDirectory) names.push(entry.name);
  }
  return names.sort();
}

/** Writes a file atomically: to a temporary sibling first, then renamed over the target. */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const temporary = `${path}.tmp-${Deno.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    await Deno.writeFile(temporary, bytes);
    await Deno.rename(temporary, path);
  } catch (error) {
    await Deno.remove(temporary).catch(() => {});
    throw error;
  }
}

/** 1-based line number of character offset `index` in `text`. */
export function lineAt(text: string, index: number): number {
  let line = 1;
  for (let i = 0; i < index && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}
