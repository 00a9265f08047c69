/**
 * The "ubo" conv variant: a direct 3x3 stride-1 padding-1 convolution whose weights are read from a
 * uniform buffer. On CPU rasterizers (llvmpipe) storage loads become per-lane scalar loops while a
 * uniform load at a workgroup-uniform address is one broadcast, so every workgroup owns a block of
 * 8 output channels (its weights are uniform across its threads; 4 when a layer has at most 4)
 * and each thread computes those channels for a register tile of rows x column quads (4 columns
 * each, so width % 4 == 0), loading each input row of the tile as aligned vec4s plus one value
 * either side. The backward to the weight of the same family is kernels/wgsl/conv3x3_wgrad.ts.
 *
 * Weights are first repacked into uniform-sized segments (pack kernel): segment (chunk, ocBlock)
 * holds, for an input-channel chunk, the weights of 8 output channels as
 * [(icLocal * 9 + tap) * 8 + j]; each segment is padded to 256 bytes so a window of whole segments
 * (at most 64 KiB) can be bound at an aligned offset. The pack kernel can also transpose and flip
 * the filter, which turns the backward-to-input pass into the same forward convolution on dy.
 */

import type { KernelSource } from "../backend.ts";
import { declareBindings, kernel, linearMain, memoizedTemplate } from "./common.ts";

/** Output channels per workgroup (and per thread). */
export const UBO_OC_BLOCK = 8;
/** vec4s in the declared uniform window (64 KiB, the smallest maxUniformBufferBindingSize). */
export const UBO_WINDOW_VEC4 = 4096;

/**
 * Pack weights into uniform segments. Threads: one per packed float.
 * Uniforms: total, runInC, runOutC, icChunk, blocksC, segFloats.
 * With `transposeFlip`, w is the forward weight [runInC, runOutC, 3, 3] and the packed filter is
 * w'[oc, ic, kh, kw] = w[ic, oc, 2 - kh, 2 - kw] (the backward-to-input convolution).
 */
function buildConvUboPackKernel(transposeFlip: boolean, ocBlock = UBO_OC_BLOCK): KernelSource {
  const source = transposeFlip
    ? "w[(ic * params.runOutC + oc) * 9u + 8u - tap]"
    : "w[(oc * params.runInC + ic) * 9u + tap]";
  return windowPackKernel(
    "convUboPack",
    ocBlock === UBO_OC_BLOCK ? { transposeFlip } : { transposeFlip, j: ocBlock },
    ocBlock,
    9,
    `value = ${source};`,
  );
}

/**
 * A kernel packing filters into uniform-window segments (kernels/conv_ubo.ts packWindows): one
 * thread per packed float [(chunk, block) segment][(icLocal * taps + tap) * J + j], zero past the
 * channels; `valueLines` set `value` from w for (oc, ic, tap). Uniforms: total, runInC, runOutC,
 * icChunk, blocksC, segFloats.
 */
export function windowPackKernel(
  family: string,
  flags: Record<string, number | boolean>,
  ocBlock: number,
  taps: number,
  valueLines: string,
): KernelSource {
  return kernel(
    family,
    flags,
    ["read", "readWrite"],
    `${
      declareBindings(
        [["w", "read"], ["packed", "readWrite"]],
        "total: u32, runInC: u32, runOutC: u32, icChunk: u32, blocksC: u32, segFloats: u32,",
      )
    }
${linearMain()}
  if (index >= params.total) { return; }
  let segment = index / params.segFloats;
  let within = index - segment * params.segFloats;
  let chunk = segment / params.blocksC;
  let ocBlock = segment - chunk * params.blocksC;
  let j = within % ${ocBlock}u;
  let t = within / ${ocBlock}u;
  let tap = t % ${taps}u;
  let icLocal = t / ${taps}u;
  let oc = ocBlock * ${ocBlock}u + j;
  let ic = chunk * params.icChunk + icLocal;
  var value = 0.0;
  if (icLocal < params.icChunk && ic < params.runInC && oc < params.runOutC) {
    ${valueLines}
  }
  packed[index] = value;
}`,
  );
}

/**
 * WGSL lines loading one input row of a register tile: the row `offset` rows from `originRow` (an
 * i32-convertible row index), starting at quad index `originQuad` (of the origin row; the row
 * offset is applied to it), as `q0..q{quads-1}` (the tile's column quads) and `shiftedRight{p}` /
 * `shiftedLeft{p}` (the same columns moved one to the right / left: the taps kw 0 and 2, see
 * {@link tileRowTap}); zeros outside the map, as selects. Every name it declares ends in `row`
 * ("" by default, for a block scope of its own; "_3" lets several rows share a scope). Needs `x`
 * (vec4 storage), `params.H`, `params.quadsW`, `hasLeft` and `hasRight` in scope. `load` gives
 * the vec4 at quad `p` of the row (-1 .. quads), from `c` (the name of the origin quad's index
 * in `x`) and `ih` (the name of the row): storage loads by default, another source in
 * bench/conv_probe.ts.
 */
export function tileRowLoads(
  originRow: string,
  originQuad: string,
  offset: number,
  quads: number,
  load: (p: number, c: string, ih: string) => string = (p, c) =>
    p < 0 ? `x[${c} - 1u]` : `x[${c} + ${p}u]`,
  row = "",
): string[] {
  const [ih, inside, c, left, right] = ["ih", "inside", "c", "left", "right"].map((n) => n + row);
  const q = (p: number) => `q${p}${row}`;
  const lines = [
    `let ${ih} = i32(${originRow}) + ${offset};`,
    `let ${inside} = ${ih} >= 0 && ${ih} < i32(params.H);`,
    `let ${c} = u32(i32(${originQuad}) + ${offset} * i32(params.quadsW));`,
    `let ${left} = select(0.0, ${load(-1, c, ih)}.w, ${inside} && hasLeft);`,
  ];
  for (let p = 0; p < quads; p++) {
    lines.push(`let ${q(p)} = select(vec4f(0.0), ${load(p, c, ih)}, ${inside});`);
  }
  lines.push(`let ${right} = select(0.0, ${load(quads, c, ih)}.x, ${inside} && hasRight);`);
  for (let p = 0; p < quads; p++) {
    const prev = p === 0 ? left : `${q(p - 1)}.w`;
    const next = p === quads - 1 ? right : `${q(p + 1)}.x`;
    lines.push(`let ${tileRowTap(0, p, row)} = vec4f(${prev}, ${q(p)}.xyz);`);
    lines.push(`let ${tileRowTap(2, p, row)} = vec4f(${q(p)}.yzw, ${next});`);
  }
  return lines;
}

/**
 * The vec4 of {@link tileRowLoads} (with the same `row` suffix) that filter column `kw` multiplies
 * for the tile's quad `p`.
 */
export function tileRowTap(kw: number, p: number, row = ""): string {
  return (kw === 0 ? `shiftedRight${p}` : kw === 1 ? `q${p}` : `shiftedLeft${p}`) + row;
}

/**
 * The `store` function of the windowed convs (ubo, sub-pixel): the output vec4 `acc` of channel oc
 * at quad index `at` of y (an expression of n, oc, oh and the parameter `position`), plus the bias
 * on the first input-channel chunk, added to y on the others. With `returnsValue` it returns the
 * value stored (zeros past the channels), for {@link storeStatistics}.
 */
export function windowedStore(
  position: string,
  at: string,
  bias: boolean,
  returnsValue: boolean,
  activation: ConvActivation | null = null,
): string {
  const first = `acc${bias ? " + vec4f(b[oc])" : ""}`;
  if (!returnsValue) {
    return `fn store(n: u32, oc: u32, oh: u32, ${position}, acc: vec4f) {
  if (oc >= params.outC) { return; }
  let at = ${at};
  if (params.accumulate != 0u) {
    y[at] = ${activated("y[at] + acc", activation)};
  } else {
    y[at] = ${activated(first, activation)};
  }
}`;
  }
  return `fn store(n: u32, oc: u32, oh: u32, ${position}, acc: vec4f) -> vec4f {
  if (oc >= params.outC) { return vec4f(0.0); }
  let at = ${at};
  var value = ${first};
  if (params.accumulate != 0u) { value = y[at] + acc; }
  value = ${activated("value", activation)};
  y[at] = value;
  return value;
}`;
}

/** An activation a windowed conv can apply as it stores its (last input chunk's) outputs. */
export type ConvActivation = "relu" | "sigmoid";

/** WGSL of `activation` applied to the vec4 expression `value`. */
function activated(value: string, activation: ConvActivation | null): string {
  if (activation === "relu") return `max(${value}, vec4f(0.0))`;
  if (activation === "sigmoid") return `(vec4f(1.0) / (vec4f(1.0) + exp(-(${value}))))`;
  return value;
}

/**
 * Batch-norm statistics formed where a windowed conv stores its outputs (flag `stats`), so that a
 * training-mode batch norm of the map needs no pass of its own to find them. Each thread sums the
 * values it stores of each of its J channels, shifted by the first of them (count, shift,
 * sum(v - shift), sum((v - shift)^2)); after one barrier, thread j adds the workgroup's threads'
 * sums of channel j, moved to thread 0's shift (the shifted sums' exact identities), and writes
 * them to statistics[oc * partials + k], k the workgroup's index over x and z and partials their
 * count: the "tile partials" that kernels/wgsl/batchnorm.ts's fused forward passes combine the
 * same way. The kernel must run its tile inside `open` .. `close` (no early return: every thread
 * reaches the barrier) and bind `nwg` (num_workgroups); `add(j, store, first)` wraps the call
 * `store` (which returns the stored value) with channel j's sums.
 */
export function storeStatistics(J: number, workgroup: number) {
  const name = (what: string, j: number) => `stat${what}${j}`;
  const declarations: string[] = [];
  const saves: string[] = [];
  for (let j = 0; j < J; j++) {
    declarations.push(
      `var ${name("Count", j)} = 0.0;`,
      `var ${name("Shift", j)} = 0.0;`,
      `var ${name("Sum", j)} = vec4f(0.0);`,
      `var ${name("Squares", j)} = vec4f(0.0);`,
    );
    saves.push(
      `tileStatistics[lid * ${J}u + ${j}u] = vec4f(${name("Count", j)}, ${name("Shift", j)}, ` +
        `dot(${name("Sum", j)}, vec4f(1.0)), dot(${name("Squares", j)}, vec4f(1.0)));`,
    );
  }
  return {
    binding: ["statistics", "readWrite", "vec4f"] as [string, "readWrite", string],
    workgroupArray: `var<workgroup> tileStatistics: array<vec4f, ${workgroup * J}>;`,
    open: `${declarations.join("\n  ")}
  if (t < params.tiles) {`,
    add: (j: number, store: string, first: boolean) =>
      `let stored = ${store};${first ? ` ${name("Shift", j)} = stored.x;` : ""}` +
      ` let deviation = stored - vec4f(${name("Shift", j)});` +
      ` ${name("Sum", j)} = ${name("Sum", j)} + deviation;` +
      ` ${name("Squares", j)} = ${name("Squares", j)} + deviation * deviation;` +
      ` ${name("Count", j)} = ${name("Count", j)} + 4.0;`,
    close: `  }
  ${saves.join("\n  ")}
  workgroupBarrier();
  if (lid < ${J}u) {
    let reference = tileStatistics[lid].y;
    var count = 0.0;
    var sum = 0.0;
    var squares = 0.0;
    for (var i = 0u; i < ${workgroup}u; i = i + 1u) {
      let s = tileStatistics[i * ${J}u + lid];
      let d = s.y - reference;
      count = count + s.x;
      sum = sum + s.z + s.x * d;
      squares = squares + s.w + d * (2.0 * s.z + s.x * d);
    }
    let oc = (params.ocBlockBase + wid.y) * ${J}u + lid;
    if (oc < params.outC) {
      statistics[oc * params.foldX * nwg.z + wid.z * params.foldX + wid.x] =
        vec4f(count, reference, sum, squares);
    }
  }
`,
  };
}

/** Register tile of one thread of the ubo conv: output rows x column quads (4 columns each). */
export interface UboTile {
  rows: number;
  quads: number;
}

/**
 * The convolution over one input-channel chunk and a window of output-channel blocks. Each thread
 * owns `tile.rows` output rows x `tile.quads` column quads x J output channels, so every input
 * vec4 it loads feeds up to 3 x 3 x J multiply-adds per row it touches and every uniform weight
 * vector serves rows x quads outputs (on llvmpipe a 4 x 2 tile runs ~3x faster than 1 x 1). All
 * taps are unrolled; image borders are selects, not branches (no divergent control flow).
 * Threads: x = tiles (batch * rowGroups * colGroups) in groups of `workgroup` (64; fewer for small
 * maps on CPU rasterizers), folded over z; y = oc block
 * in the window. Uniforms: batch, inC, H, W, outC, quadsW, tiles, icStart, icCount, accumulate,
 * ocBlockBase, segVec4, foldX, rowGroups, colGroups (colGroups * tile.quads == quadsW). With
 * `live` < J (a layer of fewer channels than one block, such as a decoder's 3 colour channels in a
 * block of 4) only the first `live` channels of the block are computed: the others would be
 * thrown away at the store. With `activation` the stored values go through it (the launcher uses
 * such a kernel for the last input-channel chunk only).
 */
function buildConvUboKernel(
  bias: boolean,
  ocBlock = UBO_OC_BLOCK,
  tile: UboTile = { rows: 1, quads: 1 },
  workgroup = 64,
  stats = false,
  live = ocBlock,
  activation: ConvActivation | null = null,
): KernelSource {
  const bindings: [string, "read" | "readWrite" | "uniform", string][] = [
    ["x", "read", "vec4f"],
    ["w", "uniform", `array<vec4f, ${UBO_WINDOW_VEC4}>`],
  ];
  if (bias) bindings.push(["b", "read", "f32"]);
  // y as vec4s: llvmpipe pays per store instruction whatever its width, and on layers with few
  // input channels four scalar stores per output vec4 cost more than the loads and multiply-adds.
  bindings.push(["y", "readWrite", "vec4f"]);
  const statistics = stats ? storeStatistics(ocBlock, workgroup) : null;
  if (statistics) bindings.push(statistics.binding);
  const { rows: R, quads: P } = tile;
  const vecsPerTap = ocBlock / 4;
  const accs: string[] = [];
  const stores: string[] = [];
  const J = Math.min(live, ocBlock);
  for (let r = 0; r < R; r++) {
    for (let p = 0; p < P; p++) {
      for (let j = 0; j < J; j++) {
        accs.push(`var acc${r}_${p}_${j} = vec4f(0.0);`);
        const store = `store(n, oc0 + ${j}u, oh0 + ${r}u, ow0 + ${4 * p}u, acc${r}_${p}_${j})`;
        stores.push(
          `if (oh0 + ${r}u < params.H) { ${
            statistics ? statistics.add(j, store, r === 0 && p === 0) : `${store};`
          } }`,
        );
      }
    }
  }
  // All R + 2 input rows first, then each accumulator's 9 taps one after another: on CPU
  // rasterizers the accumulators live on the stack, and the row-by-row order this replaced (a
  // load and a store of the accumulator per multiply-add) took 1.2x the time on 32->32 at 64x64.
  const body: string[] = [];
  for (let k = 0; k < R + 2; k++) {
    body.push(...tileRowLoads("oh0", "base", k - 1, P, undefined, `_${k}`));
  }
  for (let r = 0; r < R; r++) {
    for (let p = 0; p < P; p++) {
      for (let j = 0; j < J; j++) {
        const acc = `acc${r}_${p}_${j}`;
        for (let kh = 0; kh < 3; kh++) {
          for (let kw = 0; kw < 3; kw++) {
            // Input row r + kh (ih = oh0 - 1 + r + kh) meets output row r through filter row kh.
            const weights = `w[wRow + ${(kh * 3 + kw) * vecsPerTap + (j >> 2)}u]`;
            body.push(
              `${acc} = fma(vec4f(${weights}[${j & 3}]), ${
                tileRowTap(kw, p, `_${r + kh}`)
              }, ${acc});`,
            );
          }
        }
      }
    }
  }
  return kernel(
    "convUbo",
    {
      bias,
      j: ocBlock,
      rows: R,
      quads: P,
      ...(workgroup === 64 ? {} : { wg: workgroup }),
      ...(stats ? { stats } : {}),
      ...(J < ocBlock ? { live: J } : {}),
      ...(activation ? { act: activation } : {}),
    },
    bindings.map(([, k]) => k),
    `${
      declareBindings(
        bindings,
        "batch: u32, inC: u32, H: u32, W: u32, outC: u32, quadsW: u32, tiles: u32, " +
          "icStart: u32, icCount: u32, accumulate: u32, ocBlockBase: u32, segVec4: u32, foldX: u32, " +
          "rowGroups: u32, colGroups: u32,",
      )
    }
${
      windowedStore(
        "ow0: u32",
        "((n * params.outC + oc) * params.H + oh) * params.quadsW + ow0 / 4u",
        bias,
        stats,
        activation,
      )
    }
${statistics ? `${statistics.workgroupArray}\n` : ""}@compute @workgroup_size(${workgroup})
fn main(@builtin(workgroup_id) wid: vec3u, ${
      statistics ? "@builtin(num_workgroups) nwg: vec3u, " : ""
    }@builtin(local_invocation_index) lid: u32) {
  let t = (wid.z * params.foldX + wid.x) * ${workgroup}u + lid;
  ${statistics ? statistics.open : "if (t >= params.tiles) { return; }"}
  let colGroup = t % params.colGroups;
  let rest = t / params.colGroups;
  let oh0 = (rest % params.rowGroups) * ${R}u;
  let n = rest / params.rowGroups;
  let quadW = colGroup * ${P}u;
  let ow0 = quadW * 4u;
  let oc0 = (params.ocBlockBase + wid.y) * ${ocBlock}u;
  let seg = wid.y * params.segVec4;
  let hasLeft = quadW > 0u;
  let hasRight = quadW + ${P}u < params.quadsW;
  let planeQuads = params.H * params.quadsW;
  // Quad index of (n, icStart, oh0, quadW); one plane further per input channel.
  var base = ((n * params.inC + params.icStart) * params.H + oh0) * params.quadsW + quadW;
  ${accs.join("\n  ")}
  for (var icLocal = 0u; icLocal < params.icCount; icLocal = icLocal + 1u) {
    let wRow = seg + icLocal * ${9 * vecsPerTap}u;
    ${body.join("\n    ")}
    base = base + planeQuads;
  }
  ${stores.join("\n  ")}
${statistics ? statistics.close : ""}}`,
  );
}

// Each template builds a specialization once (memoizedTemplate); the builders above write it.
/** {@link buildConvUboPackKernel}, each specialization built once. */
export const convUboPackKernel = memoizedTemplate(buildConvUboPackKernel);
/** {@link buildConvUboKernel}, each specialization built once. */
export const convUboKernel = memoizedTemplate(buildConvUboKernel);
