import assert from "node:assert/strict";
import * as data from "../../pipelines/data/mod.ts";

/** 4x4 RGBA image whose red channel is 10 * (row * 4 + col), green 0, blue 255. */
function ramp4x4(): data.RgbaImage {
  const pixels = new Uint8Array(4 * 4 * 4);
  for (let i = 0; i < 16; i++) {
    pixels[i * 4] = 10 * i;
    pixels[i * 4 + 2] = 255;
    pixels[i * 4 + 3] = 255;
  }
  return { width: 4, height: 4, data: pixels };
}

function close(actual: ArrayLike<number>, expected: number[], tolerance = 1e-6): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(
      Math.abs(actual[i] - expected[i]) <= tolerance,
      `index ${i}: ${actual[i]} vs ${expected[i]}`,
    );
  }
}

Deno.test("cropResize: 2x downscale averages 2x2 blocks (CHW, /255)", () => {
  const out = data.cropResize(ramp4x4(), [0, 0, 4, 4], { size: 2 });
  // Red blocks: mean of {0,1,4,5}, {2,3,6,7}, {8,9,12,13}, {10,11,14,15} times 10.
  close(out.subarray(0, 4), [25, 45, 105, 125].map((v) => v / 255));
  close(out.subarray(4, 8), [0, 0, 0, 0]);
  close(out.subarray(8, 12), [1, 1, 1, 1]);
});

Deno.test("cropResize: 1:1 crop copies the boxed pixels exactly", () => {
  const out = data.cropResize(ramp4x4(), [1, 2, 2, 2], { size: 2 });
  close(out.subarray(0, 4), [90, 100, 130, 140].map((v) => v / 255));
});

Deno.test("cropResize: box past the border is clamped to the image", () => {
  const clamped = data.cropResize(ramp4x4(), [2, 2, 10, 10], { size: 2 });
  const inside = data.cropResize(ramp4x4(), [2, 2, 2, 2], { size: 2 });
  close(clamped, [...inside]);
});

Deno.test("cropResize: margin grows the box on every side", () => {
  const withMargin = data.cropResize(ramp4x4(), [1, 1, 2, 2], { size: 2, margin: 0.5 });
  const whole = data.cropResize(ramp4x4(), [0, 0, 4, 4], { size: 2 });
  close(withMargin, [...whole]);
});

Deno.test("cropResize: fractional 3x downscale weights partial pixels by area", () => {
  // Crop [0, 3) x [0, 3) to 2x2: each output covers 1.5 source pixels per axis.
  const out = data.cropResize(ramp4x4(), [0, 0, 3, 3], { size: 2 });
  // Top-left: rows/cols weights (1, 0.5)/1.5 -> red = 10 * sum w_r w_c (4r + c).
  const weights = [[0, 2 / 3], [1, 1 / 3]];
  const topLeft = weights.flatMap(([r, wr]) => weights.map(([c, wc]) => wr * wc * 10 * (4 * r + c)))
    .reduce((a, b) => a + b);
  close([out[0]], [topLeft / 255], 1e-5);
});

Deno.test("cropResize: 2x upscale is bilinear with half-pixel centres", () => {
  const image: data.RgbaImage = {
    width: 2,
    height: 1,
    data: new Uint8Array([0, 0, 0, 255, 200, 0, 0, 255]),
  };
  const out = data.cropResize(image, [0, 0, 2, 1], { size: 4 });
  // Sample centres at x = -0.25, 0.25, 0.75, 1.25 (clamped at the ends).
  close(out.subarray(0, 4), [0, 50, 150, 200].map((v) => v / 255), 1e-5);
});

Deno.test("PNG and JPEG encode/decode round trips keep size and pixels", async () => {
  const chw = new Float32Array(3 * 8 * 8);
  for (let i = 0; i < chw.length; i++) chw[i] = (i % 17) / 16;
  const png = await data.encodePngChw(chw, 8);
  const decoded = await data.decodeImage(png);
  assert.deepEqual([decoded.width, decoded.height], [8, 8]);
  assert.deepEqual(data.imageSize(png), { width: 8, height: 8 });
  close(data.rgbaToChw(decoded), [...chw].map((v) => Math.round(v * 255) / 255), 1e-6);

  const smooth = new Float32Array(3 * 16 * 16).fill(0.5);
  const jpeg = await data.encodeJpegChw(smooth, 16, 16, 95);
  assert.deepEqual(data.imageSize(jpeg), { width: 16, height: 16 });
  const fromJpeg = data.rgbaToChw(await data.decodeImage(jpeg));
  assert.ok(fromJpeg.every((v) => Math.abs(v - 0.5) < 0.02));
});

Deno.test("decodeImage rejects non-images with the source name", async () => {
  await assert.rejects(
    () => data.decodeImage(new TextEncoder().encode("hello world, not an image"), "x.png"),
    (error: Error) => error instanceof data.DataError && error.message.startsWith("x.png: "),
  );
  const truncated = (await data.encodePngChw(new Float32Array(3 * 8 * 8), 8)).subarray(0, 40);
  await assert.rejects(() => data.decodeImage(truncated, "cut.png"), data.DataError);
});
