import assert from "node:assert/strict";
import * as data from "../../pipelines/data/mod.ts";

/** Builds a .npy file by hand (independent of encodeNpy) with the given version and body. */
function handNpy(version: 1 | 2, header: string, body: Uint8Array): Uint8Array {
  const prefix = version === 1 ? 10 : 12;
  const padded = header + " ".repeat((64 - ((prefix + header.length + 1) % 64)) % 64) + "\n";
  const out = new Uint8Array(prefix + padded.length + body.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]);
  const view = new DataView(out.buffer);
  if (version === 1) view.setUint16(8, padded.length, true);
  else view.setUint32(8, padded.length, true);
  for (let i = 0; i < padded.length; i++) out[prefix + i] = padded.charCodeAt(i);
  out.set(body, prefix + padded.length);
  return out;
}

Deno.test("parseNpy: v1 '<f4' vector and v2 '<i8' scalar", () => {
  const floats = new Float32Array([1.5, -2.25, 3]);
  const v1 = handNpy(
    1,
    "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
    new Uint8Array(floats.buffer),
  );
  assert.deepEqual(data.parseNpy(v1), { dtype: "<f4", shape: [3], values: [1.5, -2.25, 3] });
  const big = new BigInt64Array([-7n]);
  const v2 = handNpy(
    2,
    "{'descr': '<i8', 'fortran_order': False, 'shape': (), }",
    new Uint8Array(big.buffer),
  );
  assert.deepEqual(data.parseNpy(v2), { dtype: "<i8", shape: [], values: [-7] });
});

Deno.test("parseNpy: '<U' strings (as the AffectNet 8-label release stores labels)", () => {
  // "0.31" and "-1" as UTF-32LE with NUL padding to width 4.
  const body = new Uint8Array(2 * 4 * 4);
  const view = new DataView(body.buffer);
  [..."0.31"].forEach((ch, i) => view.setUint32(4 * i, ch.charCodeAt(0), true));
  [..."-1"].forEach((ch, i) => view.setUint32(16 + 4 * i, ch.charCodeAt(0), true));
  const npy = handNpy(1, "{'descr': '<U4', 'fortran_order': False, 'shape': (2,), }", body);
  assert.deepEqual(data.parseNpy(npy).values, ["0.31", "-1"]);
  const scalar = data.parseNpy(data.encodeNpy(["0.5"], "<U", []));
  assert.equal(data.npyScalar(scalar, "x"), 0.5);
});

Deno.test("encodeNpy/parseNpy round trip f8, i4 and 2-D shape", () => {
  const f8 = data.parseNpy(data.encodeNpy([0.1, 2, -3], "<f8"));
  assert.deepEqual(f8.values, [0.1, 2, -3]);
  const grid = data.parseNpy(data.encodeNpy([1, 2, 3, 4, 5, 6], "<i4", [2, 3]));
  assert.deepEqual(grid.shape, [2, 3]);
  assert.deepEqual(grid.values, [1, 2, 3, 4, 5, 6]);
});

Deno.test("parseNpy: clear errors for bad magic, big-endian and truncated data", () => {
  assert.throws(() => data.parseNpy(new Uint8Array(20), "a.npy"), /a\.npy: .*magic/);
  const be = handNpy(
    1,
    "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }",
    new Uint8Array(4),
  );
  assert.throws(() => data.parseNpy(be, "b.npy"), /big-endian/);
  const cut = handNpy(
    1,
    "{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }",
    new Uint8Array(8),
  );
  assert.throws(() => data.parseNpy(cut, "c.npy"), /c\.npy: .*truncated/);
});

Deno.test("parseCsv: quotes, doubled quotes, embedded comma/newline, CRLF, line numbers", () => {
  const text = 'a,b,c\r\n"x,1","say ""hi""",3\r\n\r\n"multi\nline",2,3\nlast,,\n';
  const records = data.parseCsv(text, "t.csv");
  assert.deepEqual(records.map((r) => r.fields), [
    ["a", "b", "c"],
    ["x,1", 'say "hi"', "3"],
    ["multi\nline", "2", "3"],
    ["last", "", ""],
  ]);
  assert.deepEqual(records.map((r) => r.line), [1, 2, 4, 6]);
  assert.throws(() => data.parseCsv('a,b\n1,"open\n', "u.csv"), /u\.csv:2: unterminated/);
});
