/**
 * What each finished part of a run was made with, so that `--resume` never mixes parts made with
 * different settings (a config.json edited by hand, or a flag given on resume). Each part records
 * only the settings its result depends on: adding a strategy or a seed to a finished run still
 * resumes, while changing the data or an autoencoder's settings is an error that names the part
 * and the fields.
 */

import { autoencoderVariants, ExperimentConfig, isPlainObject, readerSteps } from "./config.ts";

/** A part of a run: a trained network, a fidelity report, or one regressor run. */
export type RunPart =
  | { kind: "reader" }
  | { kind: "judge" }
  | { kind: "autoencoder"; variant: string }
  | { kind: "fidelity"; variant: string }
  | { kind: "run"; strategy: string; seed: number };

/** The key a part's settings are stored under in state.json. */
export function partKey(part: RunPart): string {
  switch (part.kind) {
    case "reader":
    case "judge":
      return part.kind;
    case "autoencoder":
    case "fidelity":
      return `${part.kind}:${part.variant}`;
    case "run":
      return `run:${part.strategy}#${part.seed}`;
  }
}

/** The autoencoder variant a generated strategy name uses, or null for a real-data strategy. */
function strategyVariant(strategy: string): string | null {
  if (!strategy.startsWith("generated")) return null;
  return strategy.startsWith("generated-improved") ? "improved" : "paper";
}

/** The autoencoder settings that both variants train with. */
const AUTOENCODER_TRAINING = [
  "size",
  "codeSize",
  "epochs",
  "batchSize",
  "lr",
  "lambdaValence",
  "lambdaArousal",
  "pairsPerSample",
] as const;

/** The settings a part's result depends on (plain JSON). */
export function partSettings(config: ExperimentConfig, part: RunPart): Record<string, unknown> {
  const base = { seed: config.seed, data: config.data };
  switch (part.kind) {
    case "reader":
      return { ...base, regressor: config.regressor, steps: readerSteps(config) };
    case "judge":
      return {
        ...base,
        regressor: config.regressor,
        fidelity: { ...config.fidelity, enabled: undefined },
      };
    case "autoencoder": {
      const variant = autoencoderVariants(config).find((v) => v.name === part.variant);
      if (!variant) {
        throw new Error(`no autoencoder variant "${part.variant}" in this configuration`);
      }
      // The training settings; the paper variant's switches are in `variant`.
      const training = Object.fromEntries(
        AUTOENCODER_TRAINING.map((key) => [key, config.autoencoder[key]]),
      );
      return {
        ...base,
        autoencoder: training,
        variant,
        // A regressor reader is trained with the regressor settings.
        ...(variant.consistencyWeight > 0 && variant.consistencyReader === "regressor"
          ? { reader: config.regressor }
          : {}),
      };
    }
    case "fidelity":
      return {
        autoencoder: partSettings(config, { kind: "autoencoder", variant: part.variant }),
        judge: partSettings(config, { kind: "judge" }),
        generatedCount: config.strategies.generatedCount,
      };
    case "run": {
      const variant = strategyVariant(part.strategy);
      return {
        ...base,
        regressor: config.regressor,
        binSize: config.strategies.binSize,
        ...(variant
          ? {
            autoencoder: partSettings(config, { kind: "autoencoder", variant }),
            generatedCount: config.strategies.generatedCount,
          }
          : {}),
      };
    }
  }
}

/** Dotted paths where two JSON values differ, with both values: "data.skew: uniform -> affectnet". */
export function settingsDifferences(before: unknown, now: unknown, path = ""): string[] {
  if (isPlainObject(before) && isPlainObject(now)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(now)])].sort();
    return keys.flatMap((key) =>
      settingsDifferences(before[key], now[key], path ? `${path}.${key}` : key)
    );
  }
  // JSON round trip: undefined and a missing key are the same; arrays compare by content.
  const show = (x: unknown) => x === undefined ? "(unset)" : JSON.stringify(x);
  return show(before) === show(now)
    ? []
    : [`${path || "(value)"}: ${show(before)} -> ${show(now)}`];
}

/** Thrown when a finished part of a resumed run was made with other settings. */
export class ResumeMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ResumeMismatchError";
  }
}

/**
 * Check a part against the settings recorded for it in `recorded` (state.json's `settings`), and
 * record them when none are there yet (a new part, or a run from before they were recorded).
 * Throws ResumeMismatchError naming the run folder, the part and every differing field.
 */
export function checkPartSettings(
  recorded: Record<string, unknown>,
  config: ExperimentConfig,
  part: RunPart,
  runDir: string,
): void {
  const key = partKey(part);
  const now = JSON.parse(JSON.stringify(partSettings(config, part)));
  if (!(key in recorded)) {
    recorded[key] = now;
    return;
  }
  const made = withMissing(recorded[key], JSON.parse(JSON.stringify(partSettings(LEGACY, part))));
  const differences = settingsDifferences(made, now);
  if (differences.length === 0) return;
  throw new ResumeMismatchError(
    `${runDir}: ${describePart(part)} was made with other settings than this configuration ` +
      `(${differences.join("; ")}). Resume with the settings it was made with, start a new ` +
      `run with --out, or delete "${key}" from "settings" in state.json together with the part ` +
      `itself to make it again.`,
  );
}

/**
 * What a part recorded before a setting existed was made with: the schema defaults (a new setting
 * defaults to the old behaviour), except where a new setting's default changed the behaviour.
 */
const LEGACY: ExperimentConfig = ExperimentConfig.parse({
  improved: {
    enabled: true,
    editRegionsOnly: false,
    balancedTargets: false,
    consistencyReader: "snapshot",
    consistencyReaderSteps: 0,
  },
  fidelity: { judgeSchedule: "constant" },
});

/** `record` with the keys it lacks taken from `fallback`, recursively. */
function withMissing(record: unknown, fallback: unknown): unknown {
  if (!isPlainObject(record) || !isPlainObject(fallback)) return record;
  const out: Record<string, unknown> = { ...record };
  for (const [key, value] of Object.entries(fallback)) {
    out[key] = key in record ? withMissing(record[key], value) : value;
  }
  return out;
}

function describePart(part: RunPart): string {
  switch (part.kind) {
    case "reader":
      return "the consistency reader (reader.safetensors)";
    case "judge":
      return "the fidelity judge (judge.safetensors)";
    case "autoencoder":
      return `the "${part.variant}" autoencoder`;
    case "fidelity":
      return `the fidelity report of the "${part.variant}" autoencoder`;
    case "run":
      return `the regressor run ${part.strategy} seed ${part.seed}`;
  }
}
