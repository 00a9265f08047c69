/**
 * `deno task train`: the paper's whole experiment. The training pipeline lands with the
 * pipelines issue; until then this entry point says so instead of pretending to train.
 */

if (import.meta.main) {
  console.log(
    "deno task train: not yet — the engine, data and metrics are in place; the training " +
      "pipeline (autoencoder, regressor strategies, report) is the next issue.",
  );
}
