/** Where in an input file a problem was found, so messages can point at it. */
export interface DataErrorLocation {
  /** Path of the offending file. */
  file?: string;
  /** 1-based line number inside `file`, when the format is line-oriented. */
  line?: number;
}

/**
 * Error raised for bad dataset input (missing folders, malformed files, out-of-range labels,
 * empty splits). The message always starts with `file:line:` when those are known, so a user can
 * jump straight to the problem instead of reading a stack trace from deep inside a parser.
 */
export class DataError extends Error {
  /** Path of the offending file, when known. */
  readonly file?: string;
  /** 1-based line number, when known. */
  readonly line?: number;

  /** Builds the error; `where` is prefixed to the message as `file:line: `. */
  constructor(message: string, where: DataErrorLocation = {}) {
    const prefix = where.file === undefined
      ? ""
      : where.line === undefined
      ? `${where.file}: `
      : `${where.file}:${where.line}: `;
    super(prefix + message);
    this.name = "DataError";
    this.file = where.file;
    this.line = where.line;
  }
}
