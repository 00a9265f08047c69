/**
 * Markdown for the run report: metric summaries as "mean ± std", a metrics table per strategy
 * and the paper's Tables 1-3 (under-sampling, over-sampling, comparison).
 *
 * @module
 */

/**
 * Mean and spread of one metric over repeated runs (seeds). `runs` is either the per-run
 * values or their count, so the `RunSummary` of `metrics.ts` (`summarize`) fits as is.
 */
export interface Summary {
  /** Mean over the runs; NaN when undefined (e.g. the correlation of a constant predictor). */
  mean: number;
  /** Sample standard deviation over the runs. */
  std: number;
  /** The per-run values, or the number of runs. */
  runs: readonly number[] | number;
}

/** The four scores of one affect dimension, each summarised over runs. */
export interface Scores {
  /** Root-mean-square error (lower is better). */
  rmse: Summary;
  /** Pearson correlation (higher is better). */
  corr: Summary;
  /** Concordance correlation coefficient (higher is better). */
  ccc: Summary;
  /** Sign agreement ratio (higher is better). */
  sagr: Summary;
}

/** Scores of one strategy for both affect dimensions. */
export interface StrategyMetrics {
  /** Valence scores. */
  valence: Scores;
  /** Arousal scores. */
  arousal: Scores;
}

/** A row of {@linkcode metricsTable}: a strategy and its scores. */
export interface MetricsRow {
  /** Strategy name shown in the first column, e.g. "original" or "under-0.5". */
  name: string;
  /** The strategy's scores. */
  metrics: StrategyMetrics;
}

/** Options for {@linkcode metricsTable}. */
export interface MetricsTableOptions {
  /** Bold the best mean of each column (lowest RMSE, highest of the others). Default false. */
  boldBest?: boolean;
  /** Decimals of means and standard deviations. Default 3. */
  digits?: number;
}

/** Options for {@linkcode paperTables}. */
export interface PaperTablesOptions {
  /** Bold the best mean of each column in every table. Default true. */
  boldBest?: boolean;
  /** Decimals of means and standard deviations. Default 3. */
  digits?: number;
  /** Markdown heading level of each table's title. Default 3 ("### Table 1: ..."). */
  headingLevel?: number;
}

/** Alignment of a markdown table column; omitted means the renderer's default. */
export type ColumnAlign = "left" | "right" | "center";

/** Number of runs behind a summary, whichever form `runs` has. */
function runCount(summary: Summary): number {
  return typeof summary.runs === "number" ? summary.runs : summary.runs.length;
}

/** `value.toFixed(digits)` without a minus sign on a value that rounds to zero. */
function fixed(value: number, digits: number): string {
  const text = value.toFixed(digits);
  return Number(text) === 0 ? (0).toFixed(digits) : text;
}

/**
 * Formats a summary as "0.123 ± 0.004". A NaN mean gives "n/a"; a single run (or a non-finite
 * std) shows the mean alone, since its spread is unknown.
 */
export function formatSummary(summary: Summary, digits = 3): string {
  if (!Number.isFinite(summary.mean)) return "n/a";
  const mean = fixed(summary.mean, digits);
  if (runCount(summary) <= 1 || !Number.isFinite(summary.std)) return mean;
  return `${mean} ± ${fixed(summary.std, digits)}`;
}

/** Makes text safe inside a table cell: pipes escaped, line breaks turned into spaces. */
function escapeCell(text: string): string {
  return text.replace(/\r?\n/g, " ").replaceAll("|", "\\|");
}

const ALIGN_RULE: Record<ColumnAlign, string> = {
  left: ":---",
  right: "---:",
  center: ":---:",
};

/**
 * A GitHub-flavoured markdown table, one line per row, ending with a newline. Pipes in cells
 * are escaped; short rows are padded with empty cells.
 *
 * @throws {Error} If a row has more cells than the header.
 */
export function markdownTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  align: readonly (ColumnAlign | undefined)[] = [],
): string {
  const line = (cells: readonly string[]) => `| ${cells.map(escapeCell).join(" | ")} |`;
  const rules = header.map((_, k) => {
    const columnAlign = align[k];
    return columnAlign ? ALIGN_RULE[columnAlign] : "---";
  });
  const lines = [line(header), `| ${rules.join(" | ")} |`];
  rows.forEach((row, r) => {
    if (row.length > header.length) {
      throw new Error(
        `markdownTable: row ${r} has ${row.length} cells but the header has ${header.length}`,
      );
    }
    lines.push(line([...row, ...Array<string>(header.length - row.length).fill("")]));
  });
  return `${lines.join("\n")}\n`;
}

/** A column of the metrics table: which score it shows and which direction is better. */
interface MetricColumn {
  header: string;
  dimension: keyof StrategyMetrics;
  score: keyof Scores;
  lowerIsBetter: boolean;
}

const METRIC_COLUMNS: readonly MetricColumn[] = (["rmse", "corr", "ccc", "sagr"] as const)
  .flatMap((score) =>
    (["valence", "arousal"] as const).map((dimension) => ({
      header: `${score.toUpperCase()} ${dimension === "valence" ? "V" : "A"}`,
      dimension,
      score,
      lowerIsBetter: score === "rmse",
    }))
  );

/**
 * A markdown table of strategies' scores with the columns Strategy | RMSE V | RMSE A | CORR V |
 * CORR A | CCC V | CCC A | SAGR V | SAGR A, each cell "mean ± std". With `boldBest`, the best
 * mean of each column is bold (ties all bold) when at least two rows have a finite mean there.
 */
export function metricsTable(
  rows: readonly MetricsRow[],
  options: MetricsTableOptions = {},
): string {
  const digits = options.digits ?? 3;
  const best = METRIC_COLUMNS.map((column) => {
    const means = rows.map((row) => row.metrics[column.dimension][column.score].mean)
      .filter(Number.isFinite);
    if (!options.boldBest || means.length < 2) return undefined;
    return column.lowerIsBetter ? Math.min(...means) : Math.max(...means);
  });
  const body = rows.map((row) => [
    row.name,
    ...METRIC_COLUMNS.map((column, k) => {
      const summary = row.metrics[column.dimension][column.score];
      const text = formatSummary(summary, digits);
      return best[k] !== undefined && summary.mean === best[k] ? `**${text}**` : text;
    }),
  ]);
  return markdownTable(
    ["Strategy", ...METRIC_COLUMNS.map((c) => c.header)],
    body,
    [undefined, ...METRIC_COLUMNS.map(() => "right" as const)],
  );
}

/** Names starting with `prefix`, ordered by the numeric threshold after it (others last). */
function thresholdStrategies(names: readonly string[], prefix: string): string[] {
  const threshold = (name: string) => {
    const text = name.slice(prefix.length);
    const value = text.trim() === "" ? NaN : Number(text);
    return Number.isFinite(value) ? value : undefined;
  };
  return names.filter((name) => name.startsWith(prefix)).sort((a, b) => {
    const ta = threshold(a), tb = threshold(b);
    if (ta !== undefined && tb !== undefined) return ta - tb || a.localeCompare(b);
    if (ta !== undefined) return -1;
    if (tb !== undefined) return 1;
    return a.localeCompare(b);
  });
}

/** The candidate with the highest CCC V + CCC A; the first one wins ties and all-NaN cases. */
function bestByCcc(
  candidates: readonly string[],
  strategies: Readonly<Record<string, StrategyMetrics>>,
): string | undefined {
  let best: string | undefined;
  let bestScore = -Infinity;
  for (const name of candidates) {
    const { valence, arousal } = strategies[name];
    const score = valence.ccc.mean + arousal.ccc.mean;
    if (score > bestScore) {
      best = name;
      bestScore = score;
    }
  }
  return best ?? candidates[0];
}

/**
 * The paper's Tables 1-3 as markdown sections:
 * - Table 1 "Under-sampling": `original` and every `under-<T>`, by increasing T;
 * - Table 2 "Over-sampling": `original` and every `over-<T>`, by increasing T;
 * - Table 3 "Comparison": `original`, the best `under-*` and the best `over-*` (highest mean
 *   CCC V + CCC A), `generated`, then every other strategy in the record's order.
 *
 * Tables 1 and 2 are left out when no strategy of their kind exists, Table 3 when it would be
 * empty. Returns "" when there is nothing to show.
 */
export function paperTables(
  strategies: Readonly<Record<string, StrategyMetrics>>,
  options: PaperTablesOptions = {},
): string {
  const names = Object.keys(strategies);
  const heading = "#".repeat(Math.min(6, Math.max(1, options.headingLevel ?? 3)));
  const tableOptions = { boldBest: options.boldBest ?? true, digits: options.digits };
  const original = names.includes("original") ? ["original"] : [];
  const under = thresholdStrategies(names, "under-");
  const over = thresholdStrategies(names, "over-");
  const section = (title: string, rowNames: readonly string[]) =>
    `${heading} ${title}\n\n${
      metricsTable(rowNames.map((name) => ({ name, metrics: strategies[name] })), tableOptions)
    }`;
  const sections: string[] = [];
  if (under.length > 0) sections.push(section("Table 1: Under-sampling", [...original, ...under]));
  if (over.length > 0) sections.push(section("Table 2: Over-sampling", [...original, ...over]));
  const others = names.filter((name) =>
    name !== "original" && name !== "generated" && !name.startsWith("under-") &&
    !name.startsWith("over-")
  );
  const comparison = [
    ...original,
    bestByCcc(under, strategies),
    bestByCcc(over, strategies),
    ...(names.includes("generated") ? ["generated"] : []),
    ...others,
  ].filter((name): name is string => name !== undefined);
  if (comparison.length > 0) sections.push(section("Table 3: Comparison", comparison));
  return sections.join("\n");
}
