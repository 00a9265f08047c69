/**
 * Resume safety: each finished part of a run records the settings it depends on, and resuming it
 * with other settings is refused with the part and the fields named. Adding strategies or seeds to
 * a finished run stays allowed.
 */

import assert from "node:assert/strict";
import { type ExperimentConfigInput, readerSteps, resolveConfig } from "../pipelines/config.ts";
import {
  checkPartSettings,
  partKey,
  partSettings,
  ResumeMismatchError,
  type RunPart,
  settingsDifferences,
} from "../pipelines/settings.ts";

const tiny = (extra: ExperimentConfigInput = {}) =>
  resolveConfig({ preset: "tiny", improved: { enabled: true } }, extra);
const base = tiny();
const improvedAe: RunPart = { kind: "autoencoder", variant: "improved" };
const paperAe: RunPart = { kind: "autoencoder", variant: "paper" };
const judge: RunPart = { kind: "judge" };
const originalRun: RunPart = { kind: "run", strategy: "original", seed: 0 };
const generatedRun: RunPart = { kind: "run", strategy: "generated-improved-fill", seed: 1 };

function same(part: RunPart, other: ReturnType<typeof resolveConfig>): boolean {
  return settingsDifferences(partSettings(base, part), partSettings(other, part)).length === 0;
}

Deno.test("part keys are distinct and readable", () => {
  assert.equal(partKey(improvedAe), "autoencoder:improved");
  assert.equal(partKey({ kind: "fidelity", variant: "paper" }), "fidelity:paper");
  assert.equal(partKey(generatedRun), "run:generated-improved-fill#1");
  assert.equal(partKey(judge), "judge");
});

Deno.test("each part depends on its own settings only", () => {
  const skewed = tiny({ data: { skew: "uniform" } });
  for (const part of [improvedAe, paperAe, judge, originalRun, generatedRun]) {
    assert.ok(!same(part, skewed), `${partKey(part)} depends on the data`);
  }
  const improvedChanged = tiny({ improved: { consistencyWeight: 0.5 } });
  assert.ok(!same(improvedAe, improvedChanged));
  assert.ok(!same(generatedRun, improvedChanged), "a generated run depends on its autoencoder");
  assert.ok(same(paperAe, improvedChanged), "the paper autoencoder does not");
  assert.ok(same(originalRun, improvedChanged), "a real-data run does not");
  assert.ok(same(judge, improvedChanged), "the judge does not");

  const longer = tiny({ regressor: { steps: 999 } });
  assert.ok(!same(originalRun, longer) && !same(judge, longer));
  const snapshotReader = (steps: number) =>
    tiny({ improved: { consistencyReader: "snapshot" }, regressor: { steps } });
  assert.equal(
    settingsDifferences(
      partSettings(snapshotReader(20), improvedAe),
      partSettings(snapshotReader(999), improvedAe),
    ).length,
    0,
    "a snapshot reader does not use the regressor settings",
  );
  const withRegressorReader = (steps: number) =>
    tiny({
      improved: { enabled: true, consistencyReader: "regressor" },
      regressor: { steps },
    });
  assert.ok(
    settingsDifferences(
      partSettings(withRegressorReader(20), improvedAe),
      partSettings(withRegressorReader(40), improvedAe),
    ).length > 0,
    "a regressor reader does",
  );

  const reader: RunPart = { kind: "reader" };
  const ownSteps = tiny({
    improved: { consistencyReader: "regressor", consistencyReaderSteps: 77 },
    regressor: { steps: 20 },
  });
  assert.equal(readerSteps(snapshotReader(20)), 0, "no regressor reader with a snapshot");
  assert.equal(readerSteps(base), 20, "the tiny preset's reader trains as long as its regressors");
  assert.equal(readerSteps(resolveConfig({ improved: { enabled: true } })), 1000, "the default");
  assert.equal(readerSteps(withRegressorReader(20)), 20, "0 = the regressor's steps");
  assert.equal(readerSteps(ownSteps), 77);
  assert.ok(
    settingsDifferences(
      partSettings(withRegressorReader(20), reader),
      partSettings(ownSteps, reader),
    ).length > 0,
    "the reader depends on its steps",
  );
  assert.ok(
    settingsDifferences(
      partSettings(withRegressorReader(20), originalRun),
      partSettings(ownSteps, originalRun),
    ).length === 0,
    "a real-data run does not",
  );

  // Extending a finished run: more strategies, more seeds, other logging.
  const extended = tiny({
    seeds: 5,
    strategies: { under: [4, 9], mixing: ["all", "real"] },
    logEvery: 1,
    quiet: true,
  });
  for (const part of [improvedAe, paperAe, judge, originalRun, generatedRun]) {
    assert.ok(same(part, extended), `${partKey(part)} is unaffected by extending the run`);
  }
});

Deno.test("settingsDifferences names every differing path with both values", () => {
  assert.deepEqual(
    settingsDifferences(
      { data: { skew: "affectnet", n: 1 }, list: [1, 2], gone: true },
      { data: { skew: "uniform", n: 1 }, list: [1, 3], added: 0 },
    ),
    [
      "added: (unset) -> 0",
      'data.skew: "affectnet" -> "uniform"',
      "gone: true -> (unset)",
      "list: [1,2] -> [1,3]",
    ],
  );
  assert.deepEqual(settingsDifferences({ a: 1 }, { a: 1 }), []);
});

Deno.test("checkPartSettings records new parts and refuses changed ones", () => {
  const recorded: Record<string, unknown> = {};
  checkPartSettings(recorded, base, improvedAe, "runs/x");
  assert.ok("autoencoder:improved" in recorded, "recorded on first sight");
  checkPartSettings(recorded, base, improvedAe, "runs/x"); // same settings: fine
  const warmer = tiny({ improved: { consistencyWarmup: 7 } });
  assert.throws(
    () => checkPartSettings(recorded, warmer, improvedAe, "runs/x"),
    (error: Error) => {
      assert.ok(error instanceof ResumeMismatchError);
      assert.match(error.message, /^runs\/x: the "improved" autoencoder/);
      assert.match(error.message, /variant\.consistencyWarmup: 2 -> 7/);
      assert.match(error.message, /"autoencoder:improved"/);
      return true;
    },
  );
  // Records made before a setting existed: the old behaviour is assumed, which is the schema default
  // unless the default changed it (the judge's lr schedule was constant).
  const old = JSON.parse(JSON.stringify(partSettings(base, improvedAe)));
  delete old.variant.consistencyReaderSteps;
  checkPartSettings({ "autoencoder:improved": old }, base, improvedAe, "runs/x");
  const oldJudge = JSON.parse(JSON.stringify(partSettings(base, judge)));
  delete oldJudge.fidelity.judgeSchedule;
  assert.throws(
    () => checkPartSettings({ judge: oldJudge }, base, judge, "runs/x"),
    /fidelity\.judgeSchedule: "constant" -> "cosine"/,
  );
  const constantJudge = tiny({ fidelity: { judgeSchedule: "constant" } });
  checkPartSettings({ judge: oldJudge }, constantJudge, judge, "runs/x");
  // The improved autoencoder drew partners uniformly before balancedTargets (default now true).
  const oldImproved = JSON.parse(JSON.stringify(partSettings(base, improvedAe)));
  delete oldImproved.variant.balancedTargets;
  assert.throws(
    () => checkPartSettings({ "autoencoder:improved": oldImproved }, base, improvedAe, "runs/x"),
    /variant\.balancedTargets: false -> true/,
  );
  const uniformPartners = tiny({ improved: { balancedTargets: false } });
  checkPartSettings({ "autoencoder:improved": oldImproved }, uniformPartners, improvedAe, "runs/x");

  // The record survives a JSON round trip (state.json) unchanged.
  const reloaded = JSON.parse(JSON.stringify(recorded));
  checkPartSettings(reloaded, base, improvedAe, "runs/x");
});
