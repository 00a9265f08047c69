import assert from "node:assert/strict";
import { join } from "node:path";
import {
  parseSafetensors,
  readSafetensorsFile,
  SafetensorsError,
  type SafetensorsTensorInput,
  serializeSafetensors,
  writeSafetensorsFile,
} from "../nn/safetensors.ts";

/** A file built by hand: u64 LE header length, the header text padded to `padTo`, then data. */
function buildFile(headerJson: string, data: number[], padTo = 1): Uint8Array {
  let header = new TextEncoder().encode(headerJson);
  const padded = Math.ceil(header.length / padTo) * padTo;
  header = new Uint8Array([...header, ...new Array(padded - header.length).fill(0x20)]);
  const file = new Uint8Array(8 + header.length + data.length);
  new DataView(file.buffer).setBigUint64(0, BigInt(header.length), true);
  file.set(header, 8);
  file.set(data, 8 + header.length);
  return file;
}

/** The values of a tensor as a plain array, so deepEqual compares with Object.is (-0 != 0). */
function valuesOf(data: ArrayLike<number> | ArrayLike<bigint>): (number | bigint)[] {
  return Array.from(data as ArrayLike<number | bigint>);
}

Deno.test("hand-built fixture: every dtype family, F16/BF16 known values, header order", () => {
  const header = JSON.stringify({
    gain: { dtype: "F32", shape: [], data_offsets: [39, 43] },
    half: { dtype: "F16", shape: [7], data_offsets: [0, 14] },
    __metadata__: { format: "pt", note: "hand made" },
    bias: { dtype: "F32", shape: [1, 2], data_offsets: [44, 52] },
    brain: { dtype: "BF16", shape: [2, 2], data_offsets: [14, 22] },
    count: { dtype: "I64", shape: [2], data_offsets: [22, 38] },
    flag: { dtype: "U8", shape: [1], data_offsets: [38, 39] },
    mask: { dtype: "BOOL", shape: [1], data_offsets: [43, 44] },
  });
  const data = [
    // half (F16, little-endian): 0x3C00 = 1, 0xC100 = -2.5 (sign, exponent 16, mantissa
    // 0x100 = 0.25), 0x7BFF = 65504 (largest finite), 0x0001 = 2^-24 (smallest subnormal),
    // 0x03FF = 1023 * 2^-24 (largest subnormal), 0x7C00 = +Infinity, 0x8000 = -0.
    ...[0x00, 0x3c, 0x00, 0xc1, 0xff, 0x7b, 0x01, 0x00, 0xff, 0x03, 0x00, 0x7c, 0x00, 0x80],
    // brain (BF16 = upper half of F32): 0x3F80 = 1, 0xC020 = -2.5, 0x7F7F = 255 * 2^120
    // (largest finite), 0x0001 = 2^-133 (smallest subnormal).
    ...[0x80, 0x3f, 0x20, 0xc0, 0x7f, 0x7f, 0x01, 0x00],
    // count (I64): -2 and 2^40 + 5 = 0x0000_0100_0000_0005.
    ...[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    ...[0x05, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00],
    // flag (U8): 7.
    0x07,
    // gain (F32 scalar at data offset 39, unaligned): 1.5 = 0x3FC00000.
    ...[0x00, 0x00, 0xc0, 0x3f],
    // mask (BOOL): true.
    0x01,
    // bias (F32 at data offset 44, aligned): 0.25 = 0x3E800000, -3 = 0xC0400000.
    ...[0x00, 0x00, 0x80, 0x3e, 0x00, 0x00, 0x40, 0xc0],
  ];
  // Padding the header to 8 bytes puts the data buffer on an 8-byte boundary, so the offsets
  // above decide alignment: "gain" (39) and "count" (22) are unaligned, "bias" (44) aligned.
  const file = buildFile(header, data, 8);
  assert.equal((file.length - data.length) % 8, 0);
  const { tensors, metadata } = parseSafetensors(file, "fixture.safetensors");

  assert.deepEqual([...tensors.keys()], [
    "gain",
    "half",
    "bias",
    "brain",
    "count",
    "flag",
    "mask",
  ]);
  assert.deepEqual(metadata, { format: "pt", note: "hand made" });

  const half = tensors.get("half")!;
  assert.equal(half.dtype, "F16");
  assert.deepEqual(half.shape, [7]);
  assert.ok(half.data instanceof Float32Array);
  assert.deepEqual(valuesOf(half.data), [1, -2.5, 65504, 2 ** -24, 1023 * 2 ** -24, Infinity, -0]);

  const brain = tensors.get("brain")!;
  assert.ok(brain.data instanceof Float32Array);
  assert.deepEqual(brain.shape, [2, 2]);
  assert.deepEqual(valuesOf(brain.data), [1, -2.5, 255 * 2 ** 120, 2 ** -133]);

  const count = tensors.get("count")!;
  assert.ok(count.data instanceof BigInt64Array);
  assert.deepEqual(valuesOf(count.data), [-2n, 2n ** 40n + 5n]);
  assert.equal(count.data.byteOffset % 8, 0);

  const gain = tensors.get("gain")!;
  assert.deepEqual(gain.shape, []);
  assert.ok(gain.data instanceof Float32Array);
  assert.deepEqual(valuesOf(gain.data), [1.5]);
  assert.equal(gain.data.byteOffset % 4, 0, "unaligned data is copied to an aligned array");

  const bias = tensors.get("bias")!;
  assert.deepEqual(valuesOf(bias.data), [0.25, -3]);
  assert.equal(bias.data.buffer, file.buffer, "aligned data is a view, not a copy");

  assert.ok(tensors.get("flag")!.data instanceof Uint8Array);
  assert.deepEqual(valuesOf(tensors.get("flag")!.data), [7]);
  assert.equal(tensors.get("mask")!.dtype, "BOOL");
  assert.deepEqual(valuesOf(tensors.get("mask")!.data), [1]);
});

Deno.test("round trip of every dtype, scalars and empty tensors", () => {
  const input = new Map<string, SafetensorsTensorInput>([
    ["f64", { dtype: "F64", shape: [2, 2], data: [Math.PI, -0, 1e300, -5e-324] }],
    ["f32", { dtype: "F32", shape: [3], data: new Float32Array([0.5, -1.25, 3e38]) }],
    ["f16", { dtype: "F16", shape: [4], data: [1, -2.5, 65504, 2 ** -24] }],
    ["bf16", { dtype: "BF16", shape: [3], data: [1, -2.5, 2 ** -133] }],
    [
      "i64",
      {
        dtype: "I64",
        shape: [5],
        data: [-(2n ** 63n), 2n ** 63n - 1n, -5n, 2n ** 40n + 3n, -(2n ** 33n)],
      },
    ],
    ["i64-numbers", { dtype: "I64", shape: [2], data: [-7, 2 ** 45] }],
    ["i32", { dtype: "I32", shape: [3], data: [-(2 ** 31), 2 ** 31 - 1, 0] }],
    ["i16", { dtype: "I16", shape: [2], data: new Int16Array([-32768, 32767]) }],
    ["i8", { dtype: "I8", shape: [2], data: [-128, 127] }],
    ["u8", { dtype: "U8", shape: [3], data: new Uint8Array([0, 128, 255]) }],
    ["bool", { dtype: "BOOL", shape: [2], data: [1, 0] }],
    ["scalar", { dtype: "F32", shape: [], data: [42] }],
    ["empty", { dtype: "F32", shape: [3, 0], data: [] }],
    ["empty-i64", { dtype: "I64", shape: [0], data: [] }],
  ]);
  const bytes = serializeSafetensors(input, { epoch: "3", seed: "17" });

  const headerBytes = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(headerBytes % 8, 0, "header padded to a multiple of 8");
  const headerText = new TextDecoder().decode(bytes.subarray(8, 8 + headerBytes));
  assert.ok(headerText.startsWith("{"));
  assert.ok(headerText.trimEnd().endsWith("}"), "only spaces follow the JSON");
  // 4*8 + 3*4 + 4*2 + 3*2 + 5*8 + 2*8 + 3*4 + 2*2 + 2 + 3 + 2 + 4 + 0 + 0 = 141 data bytes.
  assert.equal(bytes.length - 8 - headerBytes, 141, "no padding between tensors");

  const { tensors, metadata } = parseSafetensors(bytes);
  assert.deepEqual(metadata, { epoch: "3", seed: "17" });
  assert.deepEqual([...tensors.keys()], [...input.keys()]);
  for (const [name, expected] of input) {
    const actual = tensors.get(name)!;
    assert.equal(actual.dtype, expected.dtype, name);
    assert.deepEqual(actual.shape, [...expected.shape], name);
    const expectedValues = expected.dtype === "I64"
      ? valuesOf(expected.data).map((value) => BigInt(value))
      : valuesOf(expected.data);
    assert.deepEqual(valuesOf(actual.data), expectedValues, name);
  }
  assert.ok(tensors.get("i64")!.data instanceof BigInt64Array);
  assert.ok(tensors.get("i32")!.data instanceof Int32Array);
  assert.ok(tensors.get("i16")!.data instanceof Int16Array);
  assert.ok(tensors.get("i8")!.data instanceof Int8Array);
  assert.ok(tensors.get("f64")!.data instanceof Float64Array);

  // Decoded tensors are valid input again, and re-encoding reproduces the bytes exactly.
  assert.deepEqual(serializeSafetensors(tensors, metadata), bytes);
});

Deno.test("F16 and BF16 encoding rounds to nearest, ties to even, straight from f64", () => {
  const f16 = [
    65519,
    65520,
    2 ** -25,
    3 * 2 ** -25,
    1 + 2 ** -11,
    1 + 3 * 2 ** -11,
    1023.5 * 2 ** -24,
  ];
  const bf16 = [1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -40, NaN, -Infinity, 1e39];
  const { tensors } = parseSafetensors(serializeSafetensors({
    f16: { dtype: "F16", shape: [f16.length], data: f16 },
    bf16: { dtype: "BF16", shape: [bf16.length], data: bf16 },
  }));
  assert.deepEqual(valuesOf(tensors.get("f16")!.data), [
    65504, // below the halfway point 65520
    Infinity, // halfway to 2^16 ties to the even side, which overflows
    0, // half the smallest subnormal ties to even 0
    2 * 2 ** -24, // 1.5 units ties to 2
    1, // halfway between 1 and 1 + 2^-10 ties to 1
    1 + 2 * 2 ** -10,
    2 ** -14, // the largest subnormal rounds up into the smallest normal
  ]);
  assert.deepEqual(valuesOf(tensors.get("bf16")!.data), [
    1,
    1 + 2 ** -6,
    // Rounding through f32 first would give the tie 1 + 2^-8 and then 1: no double rounding.
    1 + 2 ** -7,
    NaN,
    -Infinity,
    Infinity,
  ]);
});

Deno.test("integer-like names keep their order", () => {
  const names = ["layer.b", "10", "a", "2"];
  const input = new Map(
    names.map((name, i) => [name, { dtype: "U8" as const, shape: [1], data: [i] }]),
  );
  const { tensors } = parseSafetensors(serializeSafetensors(input));
  assert.deepEqual([...tensors.keys()], names);
  assert.deepEqual(names.map((name) => tensors.get(name)!.data[0]), [0, 1, 2, 3]);
});

Deno.test("empty file contents and metadata-only headers", () => {
  const bytes = serializeSafetensors(new Map());
  assert.equal(bytes.length, 16); // "{}" padded to 8 bytes after the prefix
  const parsed = parseSafetensors(bytes);
  assert.equal(parsed.tensors.size, 0);
  assert.deepEqual(parsed.metadata, {});
  assert.deepEqual(parseSafetensors(serializeSafetensors({}, { a: "b" })).metadata, { a: "b" });
});

/** Asserts that parsing `bytes` fails with a SafetensorsError naming the file and `pattern`. */
function assertRejects(bytes: Uint8Array, pattern: RegExp): void {
  assert.throws(() => parseSafetensors(bytes, "bad.safetensors"), (error: unknown) => {
    assert.ok(error instanceof SafetensorsError);
    assert.equal(error.fileName, "bad.safetensors");
    assert.match(error.message, /^bad\.safetensors: /);
    assert.match(error.message, pattern);
    return true;
  });
}

const f32Pair = (offsets: [number, number]) =>
  JSON.stringify({ w: { dtype: "F32", shape: [2], data_offsets: offsets } });

Deno.test("parse errors: truncated files", () => {
  assertRejects(new Uint8Array(5), /file is 5 bytes, shorter than the 8-byte/);
  const lying = buildFile("{}", []);
  new DataView(lying.buffer).setBigUint64(0, 100n, true);
  assertRejects(lying, /header length 100 exceeds the 2 bytes after the length prefix/);
  const huge = buildFile("{}", []);
  new DataView(huge.buffer).setBigUint64(0, 2n ** 64n - 1n, true);
  assertRejects(huge, /header length 18446744073709551615 exceeds/);
  // A valid file with its last 3 data bytes cut off.
  const whole = serializeSafetensors({ w: { dtype: "F32", shape: [2], data: [1, 2] } });
  assertRejects(whole.subarray(0, whole.length - 3), /run past the 5-byte data buffer \(truncated/);
});

Deno.test("parse errors: corrupt header", () => {
  assertRejects(buildFile("{ not json", []), /header is not valid JSON/);
  assertRejects(buildFile("", []), /header is not valid JSON/);
  assertRejects(buildFile("[1, 2]", []), /header is not a JSON object/);
  assertRejects(buildFile("null", []), /header is not a JSON object/);
  const invalidUtf8 = buildFile("{}", []);
  invalidUtf8[9] = 0xff;
  assertRejects(invalidUtf8, /header is not valid UTF-8/);
  assertRejects(
    buildFile('{"w": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}, "w": 1}', []),
    /header lists "w" more than once/,
  );
  assertRejects(buildFile('{"w": [1]}', []), /tensor "w": header entry is not a JSON object/);
  assertRejects(buildFile('{"__metadata__": [1]}', []), /"__metadata__" is not a JSON object/);
  assertRejects(
    buildFile('{"__metadata__": {"epoch": 3}}', []),
    /"__metadata__" value for "epoch" is 3, not a string/,
  );
});

Deno.test("parse errors: dtype and shape", () => {
  const entry = (dtype: unknown, shape: unknown) =>
    buildFile(JSON.stringify({ w: { dtype, shape, data_offsets: [0, 0] } }), []);
  assertRejects(entry("F8_E4M3", [0]), /tensor "w": unknown dtype "F8_E4M3" \(supported: F64/);
  assertRejects(entry(undefined, [0]), /unknown dtype undefined/);
  assertRejects(entry("F32", [-1]), /shape \[-1\] must hold non-negative integers/);
  assertRejects(entry("F32", [1.5]), /shape \[1.5\] must hold non-negative integers/);
  assertRejects(entry("F32", "3"), /shape "3" is not an array/);
  assertRejects(entry("F32", [2 ** 30, 2 ** 30, 2 ** 30]), /has too many elements/);
});

Deno.test("parse errors: bad offsets, overlaps and holes", () => {
  const eight = [0, 0, 128, 63, 0, 0, 0, 64];
  assertRejects(buildFile(f32Pair([0, 4]), eight), /data_offsets \[0, 4\] span 4 bytes, but shape/);
  assertRejects(buildFile(f32Pair([8, 0]), eight), /must be \[begin, end\] with 0 <= begin <= end/);
  assertRejects(
    buildFile(JSON.stringify({ w: { dtype: "F32", shape: [2], data_offsets: [0] } }), eight),
    /data_offsets \[0\] must be/,
  );
  assertRejects(buildFile(f32Pair([0, 100]), eight), /\[0, 100\] run past the 8-byte data buffer/);

  const two = (a: [number, number], b: [number, number]) =>
    JSON.stringify({
      a: { dtype: "F32", shape: [2], data_offsets: a },
      b: { dtype: "F32", shape: [2], data_offsets: b },
    });
  const twelve = new Array(12).fill(0);
  assertRejects(
    buildFile(two([0, 8], [4, 12]), twelve),
    /tensor "b" at bytes \[4, 12\) overlaps tensor "a" at \[0, 8\)/,
  );
  const sixteen = new Array(16).fill(0);
  assertRejects(
    buildFile(two([0, 8], [12, 20]), new Array(20).fill(0)),
    /bytes \[8, 12\) of the data buffer belong to no tensor \(hole\)/,
  );
  assertRejects(buildFile(two([4, 12], [12, 20]), new Array(20).fill(0)), /bytes \[0, 4\)/);
  assertRejects(
    buildFile(f32Pair([0, 8]), twelve),
    /bytes \[8, 12\) at the end of the data buffer belong to no tensor/,
  );
  // Tensors listed out of offset order are fine as long as they tile the buffer.
  assert.equal(parseSafetensors(buildFile(two([8, 16], [0, 8]), sixteen)).tensors.size, 2);
});

Deno.test("parse errors: BOOL bytes other than 0 and 1", () => {
  const header = JSON.stringify({ m: { dtype: "BOOL", shape: [2], data_offsets: [0, 2] } });
  assertRejects(buildFile(header, [1, 2]), /tensor "m": BOOL element 1 is 2, expected 0 or 1/);
});

Deno.test("serialize errors", () => {
  const fails = (tensor: SafetensorsTensorInput, pattern: RegExp, name = "w") =>
    assert.throws(() => serializeSafetensors({ [name]: tensor }), pattern);
  fails(
    { dtype: "F32", shape: [3], data: [1, 2] },
    /"w": shape \[3\] needs 3 elements, data has 2/,
  );
  fails({ dtype: "F12" as "F32", shape: [1], data: [1] }, /unknown dtype "F12"/);
  fails({ dtype: "F32", shape: [-2], data: [] }, /non-negative integers/);
  fails(
    { dtype: "I32", shape: [1], data: [2 ** 31] },
    /element 0 \(2147483648\) is not an integer/,
  );
  fails({ dtype: "I8", shape: [2], data: [1, 0.5] }, /element 1 \(0.5\) is not an integer in/);
  fails({ dtype: "U8", shape: [1], data: [-1] }, /is not an integer in \[0, 255\]/);
  fails({ dtype: "BOOL", shape: [1], data: [2] }, /in \[0, 1\]/);
  fails({ dtype: "I64", shape: [1], data: [2 ** 60] }, /not a safe integer; pass a bigint/);
  fails({ dtype: "I64", shape: [1], data: [2n ** 63n] }, /overflows I64/);
  fails({ dtype: "F32", shape: [1], data: [1n] }, /element 0 is a bigint, F32 needs numbers/);
  fails(
    { dtype: "U8", shape: [0], data: [] },
    /the name "__metadata__" is reserved/,
    "__metadata__",
  );
  assert.throws(
    () => serializeSafetensors({}, { epoch: 3 as unknown as string }),
    /metadata value for "epoch" is a number, not a string/,
  );
});

Deno.test("files: atomic write over an existing file leaves no temporary files", async () => {
  const folder = await Deno.makeTempDir({ prefix: "safetensors_test_" });
  try {
    const path = join(folder, "model.safetensors");
    await writeSafetensorsFile(path, { w: { dtype: "F32", shape: [2], data: [1, 2] } });
    await writeSafetensorsFile(
      path,
      { v: { dtype: "I64", shape: [1], data: [2n ** 50n] } },
      { step: "2" },
    );
    const { tensors, metadata } = await readSafetensorsFile(path);
    assert.deepEqual([...tensors.keys()], ["v"]);
    assert.deepEqual(valuesOf(tensors.get("v")!.data), [2n ** 50n]);
    assert.deepEqual(metadata, { step: "2" });

    // A tensor that cannot be encoded fails before anything touches the disk.
    const before = await Deno.readFile(path);
    await assert.rejects(
      writeSafetensorsFile(path, { w: { dtype: "U8", shape: [1], data: [300] } }),
      (error: unknown) => {
        assert.ok(error instanceof SafetensorsError);
        assert.match(error.message, /model\.safetensors: cannot write tensor "w"/);
        return true;
      },
    );
    assert.deepEqual(await Deno.readFile(path), before);

    const names = [];
    for await (const entry of Deno.readDir(folder)) names.push(entry.name);
    assert.deepEqual(names, ["model.safetensors"]);
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("files: read errors name the file", async () => {
  const folder = await Deno.makeTempDir({ prefix: "safetensors_test_" });
  try {
    const path = join(folder, "short.safetensors");
    await Deno.writeFile(path, new Uint8Array(3));
    await assert.rejects(
      readSafetensorsFile(path),
      new RegExp(`${path.replaceAll(/[.\\/]/g, "\\$&")}: file is 3 bytes`),
    );
    await assert.rejects(readSafetensorsFile(join(folder, "missing")), Deno.errors.NotFound);
  } finally {
    await Deno.remove(folder, { recursive: true });
  }
});
