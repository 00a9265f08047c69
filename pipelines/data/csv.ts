/** Small RFC-4180-style CSV parser that remembers line numbers for error messages. */
import { DataError } from "./errors.ts";

/** One parsed CSV record. */
export interface CsvRecord {
  /** Field values, with quotes removed and doubled quotes unescaped. */
  fields: string[];
  /** 1-based line on which the record starts. */
  line: number;
}

/**
 * Splits CSV text into records. Handles quoted fields containing commas, doubled quotes and
 * newlines, CRLF line ends and a trailing newline; blank lines are skipped. An unterminated
 * quote is reported as a `DataError` naming `file` and the line where the quote opened.
 */
export function parseCsv(text: string, file = "<csv>"): CsvRecord[] {
  const records: CsvRecord[] = [];
  let fields: string[] = [];
  let field = "";
  let line = 1;
  let recordLine = 1;
  let quoteLine = 0;
  let inQuotes = false;
  let sawAnything = false;
  const endRecord = () => {
    fields.push(field);
    if (sawAnything) records.push({ fields, line: recordLine });
    fields = [];
    field = "";
    sawAnything = false;
  };
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // byte-order mark
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (inQuotes) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else inQuotes = false;
      } else {
        if (ch === "\n") line++;
        field += ch;
      }
      continue;
    }
    if (ch === '"') {
      inQuotes = true;
      quoteLine = line;
      sawAnything = true;
    } else if (ch === ",") {
      fields.push(field);
      field = "";
      sawAnything = true;
    } else if (ch === "\n" || ch === "\r") {
      if (ch === "\r" && text[i + 1] === "\n") i++;
      endRecord();
      line++;
      recordLine = line;
    } else {
      field += ch;
      sawAnything = true;
    }
  }
  if (inQuotes) throw new DataError("unterminated quoted field", { file, line: quoteLine });
  endRecord();
  return records;
}
