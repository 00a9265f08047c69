/**
 * The whole experiment end to end on a miniature configuration: every output file exists and is
 * well-formed, an interrupted run resumed from its checkpoints ends with exactly the metrics of an
 * uninterrupted one, and the CLI reports bad flags and predicts from a finished run.
 */

import assert from "node:assert/strict";
import { Image } from "imagescript";
import { type ExperimentConfigInput, resolveConfig } from "../pipelines/config.ts";
import { runExperiment } from "../pipelines/experiment.ts";
import { ResumeMismatchError } from "../pipelines/settings.ts";
import * as data from "../pipelines/data/mod.ts";
import { main } from "../cli/train.ts";
import { testDevice } from "./helpers.ts";

const device = await testDevice();

const MINI: ExperimentConfigInput = {
  preset: "tiny",
  seeds: 2,
  data: { trainPersons: 6, framesPerPerson: 8, testPersons: 2, testFramesPerPerson: 8 },
  autoencoder: { size: [4, 8, 8, 8], epochs: 2, batchSize: 16, lr: 1e-3 },
  regressor: { width: 1 / 16, inputSize: 32, steps: 4, batchSize: 16, lr: 1e-3 },
  strategies: { under: [3], over: [4], binSize: 0.25, mixing: ["all", "real", "fill"] },
  improved: {
    enabled: true,
    regionEmphasis: 3,
    consistencyWeight: 0.1,
    consistencyWarmup: 1,
    consistencyReader: "regressor",
  },
  // The judge reads at its own size (not the regressors' 32).
  fidelity: { judgePersons: 3, judgeFramesPerPerson: 8, judgeInputSize: 24 },
  logEvery: 2,
  quiet: true,
};

const quietLog = () => {};

async function assertPng(path: string): Promise<void> {
  const image = await Image.decode(await Deno.readFile(path));
  assert.ok(image.width > 10 && image.height > 10, `${path} has a real size`);
}

Deno.test("the whole experiment runs on a miniature configuration and resumes exactly", async () => {
  const root = await Deno.makeTempDir({ prefix: "va-e2e-" });
  try {
    const config = resolveConfig(MINI);
    const full = await runExperiment(config, { runDir: `${root}/full`, log: quietLog, device });
    assert.equal(full.interrupted, false);
    const dir = `${root}/full`;
    for (
      const file of [
        "config.json",
        "state.json",
        "metrics.json",
        "report.md",
        "regressor.json",
        "autoencoder.safetensors",
        "checkpoints/autoencoder-train.safetensors",
        "regressor-original.safetensors",
        "regressor-under-3.safetensors",
        "regressor-over-4.safetensors",
        "regressor-generated.safetensors",
        "regressor-generated-improved-fill.safetensors",
        "autoencoder-improved.safetensors",
        "reader.safetensors",
        "judge.safetensors",
      ]
    ) await Deno.stat(`${dir}/${file}`);
    for (
      const png of [
        "figure2.png",
        "figure2-improved.png",
        "samples-generated-improved.png",
        "loss-autoencoder.png",
        "loss-regressor.png",
        "ccc.png",
        "samples-train.png",
        "samples-generated.png",
        "histogram-original.png",
        "histogram-under-3.png",
        "histogram-over-4.png",
        "histogram-generated.png",
      ]
    ) await assertPng(`${dir}/${png}`);
    const metrics = JSON.parse(await Deno.readTextFile(`${dir}/metrics.json`));
    assert.deepEqual(Object.keys(metrics.strategies), [
      "original",
      "under-3",
      "over-4",
      "generated",
      "generated+real",
      "generated-fill",
      "generated-improved",
      "generated-improved+real",
      "generated-improved-fill",
    ]);
    assert.equal(
      metrics.trainingFaces["generated-improved+real"],
      2 * metrics.trainingFaces.original,
    );
    for (const strategy of Object.values(metrics.strategies) as Record<string, unknown>[]) {
      for (const dimension of ["valence", "arousal"]) {
        for (const metric of ["rmse", "corr", "ccc", "sagr"]) {
          const s =
            (strategy[dimension] as Record<string, { mean: number; std: number; runs: number[] }>)[
              metric
            ];
          assert.equal(s.runs.length, 2, `${dimension}.${metric} has one value per seed`);
          assert.equal(typeof s.mean, "number");
          assert.equal(typeof s.std, "number");
        }
      }
    }
    for (const variant of ["paper", "improved"]) {
      for (const part of ["generated", "control"]) {
        assert.ok(metrics.fidelity[variant][part], `fidelity.${variant}.${part}`);
      }
      assert.equal(typeof metrics.fidelity[variant].generated.overall.valence.ccc, "number");
      assert.ok("v-a+" in metrics.fidelity[variant].generated.quadrants);
      // Synthetic faces have a truth: the drawing errors, and their picture.
      const drawing = metrics.fidelity[variant].drawing;
      for (const part of ["uniformLabels", "unchangedSource", "trueLabels"]) {
        assert.equal(drawing[part].count, 16, `drawing.${part}`);
        assert.ok(drawing[part].rmse > 0 && drawing[part].rmse < 1, `drawing.${part}.rmse`);
      }
      const png = variant === "paper" ? "drawing.png" : `drawing-${variant}.png`;
      assert.ok((await Deno.stat(`${dir}/${png}`)).size > 0, png);
    }
    // Every strategy's mean error per test quadrant; the quadrant counts add up to the test set.
    for (const strategy of Object.keys(metrics.strategies)) {
      const errors = metrics.quadrantErrors[strategy];
      const counts = Object.values(errors).map((e) => (e as { count: number } | null)?.count ?? 0);
      assert.equal(counts.reduce((s: number, c: number) => s + c, 0), 16, strategy);
    }
    const report = await Deno.readTextFile(`${dir}/report.md`);
    assert.match(report, /### Where the regressors err/);
    assert.match(report, /## Generation fidelity/);
    assert.match(report, /\| the same test faces left unchanged \(no edit at all\) \| 16 \|/);
    assert.match(report, /In the expression regions the faces re-generated with new labels are /);
    assert.match(report, /!\[drawing, improved\]\(drawing-improved\.png\)/);
    assert.match(report, /trained \(4 Adam steps at 24x24, cosine lr\)/);
    assert.match(report, /## Generation options side by side/);
    assert.match(report, /## Generation options side by side/);
    assert.match(report, /Table 1: Under-sampling/);
    assert.match(report, /\| generated \|/);

    // Interrupt during the second autoencoder epoch, then resume.
    let checks = 0;
    const stop = {
      get requested() {
        // The reader's 4 steps, the first epoch's 3, then one step into epoch 2.
        return ++checks === 8;
      },
    };
    const partial = await runExperiment(config, {
      runDir: `${root}/resumed`,
      log: quietLog,
      device,
      stop,
    });
    assert.equal(partial.interrupted, true);
    const state = JSON.parse(await Deno.readTextFile(`${root}/resumed/state.json`));
    assert.equal(state.autoencoders.paper.epochsDone, 1, "the checkpoint of epoch 1 was written");
    assert.ok(state.seconds > 0, "the interrupted process's time is kept");
    const resumed = await runExperiment(config, {
      runDir: `${root}/resumed`,
      resume: true,
      log: quietLog,
      device,
    });
    assert.equal(resumed.interrupted, false);
    const resumedState = JSON.parse(await Deno.readTextFile(`${root}/resumed/state.json`));
    assert.ok(resumedState.seconds > state.seconds, "both processes' time counts");
    const resumedReport = await Deno.readTextFile(`${root}/resumed/report.md`);
    const total = Number(resumedReport.match(/Total time (\d+) s \(resumed; (\d+) s/)?.[1]);
    const last = Number(resumedReport.match(/Total time (\d+) s \(resumed; (\d+) s/)?.[2]);
    assert.ok(
      total >= last,
      `report gives the whole run's time: ${total} s, last process ${last} s`,
    );
    assert.deepEqual(
      JSON.parse(await Deno.readTextFile(`${root}/resumed/metrics.json`)).strategies,
      metrics.strategies,
      "same seed, same numbers, interrupted or not",
    );

    // Resuming finished parts with other settings is refused before anything is overwritten.
    const savedConfig = await Deno.readTextFile(`${root}/resumed/config.json`);
    const changed = resolveConfig(MINI, { improved: { consistencyWeight: 0.5 } });
    await assert.rejects(
      () =>
        runExperiment(changed, { runDir: `${root}/resumed`, resume: true, log: quietLog, device }),
      (error: Error) => {
        assert.ok(error instanceof ResumeMismatchError);
        assert.match(error.message, /the "improved" autoencoder was made with other settings/);
        assert.match(error.message, /variant\.consistencyWeight: [0-9.]+ -> 0\.5/);
        return true;
      },
    );
    assert.equal(await Deno.readTextFile(`${root}/resumed/config.json`), savedConfig);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

async function runCli(args: string[]): Promise<{ code: number; output: string }> {
  const lines: string[] = [];
  const original = { log: console.log, error: console.error };
  console.log = (...a: unknown[]) => lines.push(a.join(" "));
  console.error = (...a: unknown[]) => lines.push(a.join(" "));
  try {
    return { code: await main(args), output: lines.join("\n") };
  } finally {
    console.log = original.log;
    console.error = original.error;
  }
}

Deno.test("the CLI names bad flags and values", async () => {
  let r = await runCli(["--bogus"]);
  assert.equal(r.code, 2);
  assert.match(r.output, /unknown flag '--bogus'/);
  r = await runCli(["--preset", "huge"]);
  assert.equal(r.code, 2);
  assert.match(r.output, /preset "huge" is not one of tiny, demo, paper/);
  r = await runCli(["--seeds", "two"]);
  assert.match(r.output, /--seeds must be a non-negative integer, got "two"/);
  r = await runCli(["--data", "imagenet"]);
  assert.match(r.output, /--data must be synthetic, afew-va:PATH or affectnet:PATH/);
  r = await runCli(["train-va"]);
  assert.match(r.output, /train-va needs --strategy/);
  r = await runCli(["predict"]);
  assert.match(r.output, /predict needs --image PATH/);
  r = await runCli(["frobnicate"]);
  assert.match(r.output, /unknown command "frobnicate"/);
  r = await runCli(["--help"]);
  assert.equal(r.code, 0);
  assert.match(r.output, /--preset NAME/);
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/bad.json`, JSON.stringify({ autoencoder: { epochs: -1 } }));
    r = await runCli(["--config", `${dir}/bad.json`]);
    assert.equal(r.code, 2);
    assert.match(r.output, /config "autoencoder\.epochs": Too small/);
    await Deno.writeTextFile(`${dir}/typo.json`, JSON.stringify({ regresor: {} }));
    r = await runCli(["--config", `${dir}/typo.json`]);
    assert.match(r.output, /Unrecognized key.*regresor/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("predict reads a photo with a run's regressor and prints clipped V/A as JSON", async () => {
  const root = await Deno.makeTempDir({ prefix: "va-predict-" });
  try {
    const config = resolveConfig({
      ...MINI,
      seeds: 1,
      strategies: { under: [], over: [], generated: false, binSize: 0.25 },
      improved: { enabled: false },
      fidelity: { enabled: false },
    });
    await runExperiment(config, { runDir: `${root}/run`, log: quietLog, device });
    const face = data.synthetic({ seed: 5, persons: 1, framesPerPerson: 1, size: 96 });
    await Deno.writeFile(`${root}/face.png`, await data.encodePngChw(face.images, 96));
    const predict = (image: string, ...flags: string[]) =>
      runCli(["predict", "--image", `${root}/${image}`, "--run", `${root}/run`, ...flags]);
    const lastJson = (output: string) => JSON.parse(output.trim().split("\n").pop()!);
    const r = await predict("face.png", "--box", "8,8,80,80", "--json");
    assert.equal(r.code, 0, r.output);
    const last = lastJson(r.output);
    assert.ok(last.valence >= -1 && last.valence <= 1 && last.arousal >= -1 && last.arousal <= 1);
    // With landmarks: aligned as in training, box from the landmarks.
    await Deno.writeTextFile(`${root}/face.json`, JSON.stringify(face.samples[0].landmarks));
    const aligned = await predict("face.png", "--landmarks", `${root}/face.json`, "--json");
    assert.equal(aligned.code, 0, aligned.output);
    const read = lastJson(aligned.output);
    assert.ok(Number.isFinite(read.valence) && Number.isFinite(read.arousal));
    await Deno.writeTextFile(`${root}/short.txt`, "1 2 3");
    const bad = await predict("face.png", "--landmarks", `${root}/short.txt`);
    assert.notEqual(bad.code, 0);
    assert.match(bad.output, /short\.txt: expected 68 landmarks .* got 3 values/);
    const missing = await predict("nope.png");
    assert.notEqual(missing.code, 0);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("real dataset layouts: AFEW-VA alone, and AffectNet with the autoencoder on AFEW-VA", async () => {
  const root = await Deno.makeTempDir({ prefix: "va-real-" });
  try {
    const set = data.synthetic({ seed: 9, persons: 8, framesPerPerson: 8 });
    await data.exportAfewVa(set, `${root}/afew`);
    await data.exportAffectNet(set, `${root}/affectnet`, { validationFraction: 0.25 });
    const small: ExperimentConfigInput = {
      ...MINI,
      seeds: 1,
      improved: { enabled: false },
      fidelity: { enabled: false },
      strategies: { under: [3], over: [], binSize: 0.25, mixing: ["all"] },
    };
    const afew = await runExperiment(
      resolveConfig({ ...small, data: { source: "afew-va", path: `${root}/afew` } }),
      { runDir: `${root}/run-afew`, log: quietLog, device },
    );
    assert.deepEqual(Object.keys(afew.metrics!.strategies), ["original", "under-3", "generated"]);
    const report = await Deno.readTextFile(`${root}/run-afew/report.md`);
    assert.match(report, /afew-va at .*: \d+ training and \d+ test faces/);
    // AffectNet has no identities: without AFEW-VA for the autoencoder the run says what to do.
    await assert.rejects(
      () =>
        runExperiment(
          resolveConfig({ ...small, data: { source: "affectnet", path: `${root}/affectnet` } }),
          { runDir: `${root}/run-affectnet-alone`, log: quietLog, device },
        ),
      /--ae-data afew-va:PATH/,
    );
    const both = await runExperiment(
      resolveConfig({
        ...small,
        data: {
          source: "affectnet",
          path: `${root}/affectnet`,
          autoencoderPath: `${root}/afew`,
        },
      }),
      { runDir: `${root}/run-affectnet`, log: quietLog, device },
    );
    assert.equal(both.interrupted, false);
    assert.match(
      await Deno.readTextFile(`${root}/run-affectnet/report.md`),
      /the autoencoder trains on \d+ AFEW-VA faces/,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("generate writes Figure 2, a fidelity grid read by the judge, and edited faces", async () => {
  const root = await Deno.makeTempDir({ prefix: "va-generate-" });
  try {
    const config = resolveConfig({
      ...MINI,
      seeds: 1,
      improved: { enabled: false },
      strategies: { under: [], over: [], original: false, binSize: 0.25, mixing: ["all"] },
    });
    await runExperiment(config, { runDir: `${root}/run`, log: quietLog, device });
    const face = data.synthetic({ seed: 4, persons: 1, framesPerPerson: 1 });
    await Deno.writeFile(`${root}/face.png`, await data.encodePngChw(face.images, 64));
    const r = await runCli([
      "generate",
      "--run",
      `${root}/run`,
      "--count",
      "8",
      "--fidelity",
      "--image",
      `${root}/face.png`,
      "--valence=-0.5",
      "--arousal",
      "0.5",
    ]);
    assert.equal(r.code, 0, r.output);
    for (const png of ["figure2.png", "figure2-fidelity.png", "generated.png", "edited.png"]) {
      await assertPng(`${root}/run/generated/${png}`);
    }
    const bad = await runCli(["generate", "--run", `${root}/run`, "--variant", "improved"]);
    assert.equal(bad.code, 2);
    assert.match(bad.output, /--variant improved: this run has paper/);

    // The improved autoencoder (editing decoder, erase map and edit limit saved with it) loads.
    const improved = resolveConfig({
      ...MINI,
      seeds: 1,
      improved: { enabled: true, consistencyWeight: 0 },
      strategies: { under: [], over: [], original: false, generated: false },
      fidelity: { enabled: false },
    });
    await runExperiment(improved, { runDir: `${root}/run-improved`, log: quietLog, device });
    const edited = await runCli([
      "generate",
      "--run",
      `${root}/run-improved`,
      "--variant",
      "improved",
      "--count",
      "4",
      "--image",
      `${root}/face.png`,
    ]);
    assert.equal(edited.code, 0, edited.output);
    await assertPng(`${root}/run-improved/generated/edited.png`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
