import assert from "node:assert/strict";
import * as data from "../../pipelines/data/mod.ts";

const set = data.synthetic({ seed: 31, persons: 3, framesPerPerson: 4 });

async function decoded(png: Uint8Array): Promise<data.RgbaImage> {
  assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
  return await data.decodeImage(png);
}

function pixel(image: data.RgbaImage, x: number, y: number): number[] {
  const p = (y * image.width + x) * 4;
  return [...image.data.subarray(p, p + 3)];
}

Deno.test("vaHistogramPng: decodes with the documented size; dense cell is bright, positive arousal up", async () => {
  const labels = [...Array(50)].map(() => ({ valence: 0.95, arousal: 0.95 }));
  labels.push({ valence: -0.95, arousal: -0.95 });
  const image = await decoded(await data.vaHistogramPng(labels, { cellPixels: 10 }));
  assert.deepEqual([image.width, image.height], [28 + 200 + 70, 22 + 200 + 30]);
  // Top-right cell (v = a = 0.95) holds the maximum -> the yellow end of the ramp.
  const hot = pixel(image, 28 + 195, 22 + 5);
  assert.ok(hot[0] > 200 && hot[1] > 200 && hot[2] < 100, `hot cell ${hot}`);
  // Bottom-left cell (count 1) -> the dark end; an empty cell is light grey.
  const cold = pixel(image, 28 + 5, 22 + 195);
  assert.ok(cold[0] < 100 && cold[2] > 60, `cold cell ${cold}`);
  assert.deepEqual(pixel(image, 28 + 195, 22 + 195), [235, 235, 235]);
});

Deno.test("contactSheetPng and imageGrid decode with the expected layout", async () => {
  const sheet = await decoded(
    await data.contactSheetPng(set.images, set.samples, { columns: 4, scale: 1 }),
  );
  assert.deepEqual([sheet.width, sheet.height], [4 * (64 + 4) + 4, 3 * (84 + 4) + 4]);
  const plane = 3 * 64 * 64;
  const faces = [0, 1, 2, 3, 4].map((i) => set.images.subarray(i * plane, (i + 1) * plane));
  const grid = await decoded(
    await data.imageGrid(faces, 2, 3, { labels: ["A", "B", "C", "D", "E"], scale: 2 }),
  );
  assert.deepEqual([grid.width, grid.height], [3 * 128 + 4 * 2, 2 * (128 + 8) + 3 * 2]);
  // The first cell shows the first face, upscaled 2x.
  const expected = [0, 1, 2].map((c) => Math.round(faces[0][c * 4096 + 10 * 64 + 10] * 255));
  assert.deepEqual(pixel(grid, 2 + 20, 2 + 20), expected);
  // The slot after the last image stays white.
  assert.deepEqual(pixel(grid, 2 + 2 * 130 + 60, 2 + 138 + 60), [255, 255, 255]);
  await assert.rejects(() => data.imageGrid(faces, 1, 2), /do not fit/);
});
