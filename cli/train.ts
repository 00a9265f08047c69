/**
 * `deno task train`: the paper's whole experiment, and each stage alone.
 *
 *   deno task train [--preset demo|paper|tiny] [--data synthetic|afew-va:PATH|affectnet:PATH]
 *                   [--out RUN_DIR] [--seeds N] [--resume RUN_DIR] [--config FILE] [--quiet]
 *   deno task train train-ae | train-va --strategy NAME | generate | eval | predict --image PATH
 *
 * Flags are parsed with node:util's parseArgs (JSR's @std/cli is not reachable here).
 */

import { DataError } from "../pipelines/data/errors.ts";
import { SafetensorsError } from "../nn/safetensors.ts";
import { intFlag, parseFlags, UsageError } from "./args.ts";
import { ConfigError, type ExperimentConfigInput, resolveConfig } from "../pipelines/config.ts";
import { runExperiment } from "../pipelines/experiment.ts";
import { PREDICT_HELP, predictCommand } from "./predict.ts";
import { EVAL_HELP, evalCommand, GENERATE_HELP, generateCommand } from "./stages.ts";

const TRAIN_HELP = `Usage: deno task train [COMMAND] [flags]

Runs the paper's experiment: trains the face-generating autoencoder, draws Figure 2, trains the
V/A regressor under every strategy (original, under-T, over-T, generated) with several seeds,
evaluates them, and writes a run folder with report.md, metrics.json, figure2.png, checkpoints.

Commands:
  (none)            the whole experiment
  train-ae          only the autoencoder (and Figure 2)
  train-va          only regressors: --strategy NAME (repeatable; "all" for every strategy)
  generate          faces from a trained autoencoder: see 'generate --help'
  eval              evaluate a run's regressors on its test set: see 'eval --help'
  predict           V/A of one photo: see 'predict --help'

Flags:
  --preset NAME     tiny (smoke test), demo (default, ~35 min on 2 cores), paper
  --data SOURCE     synthetic (default), afew-va:PATH or affectnet:PATH
  --ae-data SOURCE  afew-va:PATH: the autoencoder's faces when --data has no identities
                    (the paper: AE on AFEW-VA, regressor on AffectNet)
  --out RUN_DIR     run folder (default runs/<time>-<preset>)
  --resume RUN_DIR  continue an interrupted run with its saved configuration
  --config FILE     JSON configuration (see pipelines/config.ts); flags override it
  --seeds N         regressor runs per strategy (mean/std over them)
  --seed N          base seed
  --epochs N        autoencoder epochs
  --steps N         regressor Adam steps per run
  --pretrained FILE ImageNet weights for ResNet34 (safetensors of torchvision's resnet34)
  --quiet           no progress lines, only summaries
  -h, --help        this text
`;

/** `--data synthetic|afew-va:PATH|affectnet:PATH` -> the data section of the config. */
export function dataFlag(value: string | undefined): ExperimentConfigInput["data"] | undefined {
  if (value === undefined) return undefined;
  if (value === "synthetic") return { source: "synthetic" };
  const match = /^(afew-va|affectnet):(.+)$/.exec(value);
  if (!match) {
    throw new UsageError(
      `--data must be synthetic, afew-va:PATH or affectnet:PATH, got "${value}"`,
    );
  }
  return { source: match[1] as "afew-va" | "affectnet", path: match[2] };
}

async function readConfigFile(path: string): Promise<ExperimentConfigInput> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new UsageError(`--config ${path}: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(`--config ${path}: not valid JSON (${(error as Error).message})`);
  }
}

function timestamp(): string {
  return new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
}

/** Ctrl-C: the first asks the run to checkpoint and stop; the second aborts. */
function installInterrupt(): { requested: boolean; remove(): void } {
  const signal = {
    requested: false,
    remove: () => {
      try {
        Deno.removeSignalListener("SIGINT", handler);
      } catch { /* not installed */ }
    },
  };
  const handler = () => {
    if (signal.requested) Deno.exit(130);
    signal.requested = true;
    console.error("\ninterrupt: saving a checkpoint after this step (Ctrl-C again to abort)");
  };
  try {
    Deno.addSignalListener("SIGINT", handler);
  } catch { /* signals unsupported here */ }
  return signal;
}

const TRAIN_FLAGS = {
  preset: { type: "string" },
  data: { type: "string" },
  "ae-data": { type: "string" },
  out: { type: "string" },
  resume: { type: "string" },
  config: { type: "string" },
  seeds: { type: "string" },
  seed: { type: "string" },
  epochs: { type: "string" },
  steps: { type: "string" },
  pretrained: { type: "string" },
  strategy: { type: "string", multiple: true },
  quiet: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

async function trainCommand(command: string, args: string[]): Promise<number> {
  const { values } = parseFlags(args, TRAIN_FLAGS);
  if (values.help) {
    console.log(TRAIN_HELP);
    return 0;
  }
  const layers: ExperimentConfigInput[] = [];
  let runDir: string;
  const resume = values.resume as string | undefined;
  if (resume) {
    try {
      layers.push(JSON.parse(await Deno.readTextFile(`${resume}/config.json`)));
    } catch (error) {
      throw new UsageError(
        `--resume ${resume}: no readable config.json (${(error as Error).message})`,
      );
    }
    runDir = resume;
  } else {
    if (values.config) layers.push(await readConfigFile(values.config as string));
    const flags: ExperimentConfigInput = {};
    if (values.preset) flags.preset = values.preset as ExperimentConfigInput["preset"];
    const dataConfig = dataFlag(values.data as string | undefined);
    if (dataConfig) flags.data = dataConfig;
    const aeData = values["ae-data"] as string | undefined;
    if (aeData !== undefined) {
      if (!aeData.startsWith("afew-va:") || aeData.length <= 8) {
        throw new UsageError(`--ae-data must be afew-va:PATH, got "${aeData}"`);
      }
      flags.data = { ...flags.data, autoencoderPath: aeData.slice(8) };
    }
    flags.seeds = intFlag("seeds", values.seeds);
    flags.seed = intFlag("seed", values.seed);
    if (values.epochs !== undefined) {
      flags.autoencoder = { epochs: intFlag("epochs", values.epochs) };
    }
    const regressor: ExperimentConfigInput["regressor"] = {};
    if (values.steps !== undefined) regressor.steps = intFlag("steps", values.steps);
    if (values.pretrained) regressor.pretrained = values.pretrained as string;
    if (Object.keys(regressor).length) flags.regressor = regressor;
    if (values.quiet) flags.quiet = true;
    layers.push(flags);
    const presetName = (flags.preset ?? layers[0]?.preset ?? "demo") as string;
    runDir = (values.out as string | undefined) ?? `runs/${timestamp()}-${presetName}`;
  }
  const config = resolveConfig(...layers);
  if (command === "train-ae") {
    config.strategies = {
      ...config.strategies,
      original: false,
      under: [],
      over: [],
      generated: false,
    };
  }
  if (command === "train-va") {
    const wanted = (values.strategy as string[] | undefined) ?? [];
    if (wanted.length === 0) throw new UsageError("train-va needs --strategy NAME (or all)");
    if (!wanted.includes("all")) {
      const under = wanted.filter((s) => s.startsWith("under-")).map((s) => Number(s.slice(6)));
      const over = wanted.filter((s) => s.startsWith("over-")).map((s) => Number(s.slice(5)));
      for (const s of wanted) {
        if (!/^(original|generated|under-\d+|over-\d+)$/.test(s)) {
          throw new UsageError(`--strategy "${s}" is not original, generated, under-T or over-T`);
        }
      }
      config.strategies = {
        ...config.strategies,
        original: wanted.includes("original"),
        generated: wanted.includes("generated"),
        under,
        over,
      };
    }
  }
  const stop = installInterrupt();
  try {
    const result = await runExperiment(config, {
      runDir,
      resume: Boolean(resume) || command !== "train",
      stop,
    });
    if (result.interrupted) {
      console.error(`interrupted: resume with  deno task train --resume ${runDir}`);
      return 130;
    }
    return 0;
  } finally {
    stop.remove();
  }
}

/** Entry point: returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const [first, ...rest] = args;
  const command = first && !first.startsWith("-") ? first : "train";
  const commandArgs = command === "train" && first !== "train" ? args : rest;
  try {
    switch (command) {
      case "train":
      case "train-ae":
      case "train-va":
        return await trainCommand(command, commandArgs);
      case "generate":
        return await generateCommand(commandArgs);
      case "eval":
        return await evalCommand(commandArgs);
      case "predict":
        return await predictCommand(commandArgs);
      case "help":
        console.log([TRAIN_HELP, GENERATE_HELP, EVAL_HELP, PREDICT_HELP].join("\n"));
        return 0;
      default:
        throw new UsageError(`unknown command "${command}" (see --help)`);
    }
  } catch (error) {
    if (error instanceof UsageError || error instanceof ConfigError) {
      console.error(`error: ${error.message}`);
      return 2;
    }
    // Bad input files (images, datasets, checkpoints): a clear message, no stack trace.
    if (
      error instanceof DataError || error instanceof SafetensorsError ||
      error instanceof Deno.errors.NotFound || error instanceof Deno.errors.PermissionDenied
    ) {
      console.error(`error: ${(error as Error).message}`);
      return 1;
    }
    throw error;
  }
}

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
