import assert from "node:assert/strict";
import { join } from "node:path";
import * as data from "../../pipelines/data/mod.ts";

async function withTempDir(run: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "data_loader_" });
  try {
    await run(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const set = data.synthetic({ seed: 21, persons: 4, framesPerPerson: 3 });

Deno.test("cache: first load writes it, second load reads it without decoding", async () => {
  await withTempDir(async (dir) => {
    await data.exportAfewVa(set, join(dir, "afew"));
    const { samples } = await data.readAfewVa(join(dir, "afew"));
    const cache = join(dir, "train.faces");
    const lines: string[] = [];
    const log = (line: string) => lines.push(line);
    const first = await data.loadFaces(samples, { size: 32, cache, log });
    assert.ok((await Deno.stat(cache)).size > 12 * 3 * 32 * 32);
    assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort(), [
      "afew",
      "train.faces",
    ]);
    // Hide the images: a cache hit must not touch them.
    await Deno.rename(join(dir, "afew"), join(dir, "gone"));
    const second = await data.loadFaces(samples, { size: 32, cache, log });
    assert.deepEqual(second, first);
    assert.ok(
      first.every((v) => Math.abs(v * 255 - Math.round(v * 255)) < 1e-3),
      "quantised to bytes",
    );
    assert.deepEqual(lines, []);
    // A different size is a different key: the cache is rebuilt (and now images are missing).
    await assert.rejects(
      () => data.loadFaces(samples, { size: 16, cache, log, onBadImage: "fail" }),
      data.DataError,
    );
    assert.match(lines[0], /rebuilding cache .*different sample count or size/);
  });
});

Deno.test("cache: truncated or corrupted files are detected and rebuilt", async () => {
  await withTempDir(async (dir) => {
    const cache = join(dir, "s.faces");
    const lines: string[] = [];
    const options = { size: 16, cache, log: (l: string) => lines.push(l) };
    const reference = await data.loadFaces(set.samples, options);
    const bytes = await Deno.readFile(cache);
    await Deno.writeFile(cache, bytes.subarray(0, bytes.length - 100));
    assert.deepEqual(await data.loadFaces(set.samples, options), reference);
    assert.match(lines.at(-1)!, /truncated/);
    const flipped = await Deno.readFile(cache);
    flipped[flipped.length - 5] ^= 0xff;
    await Deno.writeFile(cache, flipped);
    assert.deepEqual(await data.loadFaces(set.samples, options), reference);
    assert.match(lines.at(-1)!, /checksum/);
    await Deno.writeTextFile(cache, "garbage");
    assert.deepEqual(await data.loadFaces(set.samples, options), reference);
    assert.match(lines.at(-1)!, /truncated header/);
    // After the rebuild the file is valid again.
    const key = await data.cacheKey(set.samples, 16, 0);
    assert.equal((await data.readFaceCache(cache, key, set.samples.length, 16)).hit, true);
  });
});

Deno.test("batches: covers every index once, labels follow images, seeded shuffle, dropLast", async () => {
  const faces = set.images;
  const plane = 3 * set.size * set.size;
  const seen: number[] = [];
  for await (
    const batch of data.batches(faces, set.samples, { batchSize: 5, shuffle: true, seed: 1 })
  ) {
    for (let row = 0; row < batch.indices.length; row++) {
      const index = batch.indices[row];
      seen.push(index);
      assert.equal(batch.valence[row], Math.fround(set.samples[index].valence));
      assert.equal(batch.arousal[row], Math.fround(set.samples[index].arousal));
      assert.deepEqual(
        batch.images.subarray(row * plane, (row + 1) * plane),
        faces.subarray(index * plane, (index + 1) * plane),
      );
    }
  }
  assert.deepEqual([...seen].sort((a, b) => a - b), [...Array(12).keys()]);
  assert.notDeepEqual(seen, [...Array(12).keys()]);
  const sizes = async (options: data.BatchOptions) =>
    (await Array.fromAsync(data.batches(faces, set.samples, options))).map((b) => b.indices.length);
  assert.deepEqual(await sizes({ batchSize: 5 }), [5, 5, 2]);
  assert.deepEqual(await sizes({ batchSize: 5, dropLast: true }), [5, 5]);
  assert.deepEqual(await sizes({ batchSize: 4, order: [0, 0, 1, 2, 3] }), [4, 1]);
  const orderA = (await Array.fromAsync(
    data.batches(faces, set.samples, { batchSize: 12, shuffle: true, seed: 2 }),
  ))[0].indices;
  const orderB = (await Array.fromAsync(
    data.batches(faces, set.samples, { batchSize: 12, shuffle: true, seed: 2 }),
  ))[0].indices;
  assert.deepEqual(orderA, orderB);
});

Deno.test("batches: batch k+1 is prepared while the consumer awaits work on batch k", async () => {
  const events: string[] = [];
  const iterator = data.batches(set.images, set.samples, {
    batchSize: 4,
    onPrepared: (k) => events.push(`prepared ${k}`),
  });
  for await (const batch of iterator) {
    const k = batch.indices[0] / 4;
    events.push(`got ${k}`);
    await new Promise((resolve) => setTimeout(resolve, 5)); // stands in for GPU work
    events.push(`done ${k}`);
  }
  assert.deepEqual(events, [
    "prepared 0",
    "got 0",
    "prepared 1",
    "done 0",
    "got 1",
    "prepared 2",
    "done 1",
    "got 2",
    "done 2",
  ]);
});
