/**
 * Peers run by the benchmark when present: TF.js webgpu (npm, on the same adapter, in a Deno
 * subprocess) and PyTorch CPU (when /usr/bin/python3 imports torch), each with 2 threads' worth
 * of this machine. A missing or failing peer becomes a note, never a failure.
 *
 * On a GPU machine (bench/nvidia.sh): VA_TORCH_DEVICE=cuda runs the PyTorch peer on CUDA,
 * VA_TORCH_PYTHON names the python that has torch (default /usr/bin/python3), and VA_TFJS=0 leaves
 * the TF.js peer out (its npm packages are ~290 MB, too many to carry to a machine offline).
 */

/** One peer measurement. */
export interface PeerResult {
  peer: string;
  what: string;
  ms: number | null;
  gflops: number | null;
  imagesPerSecond: number | null;
  note?: string;
}

const HERE = new URL(".", import.meta.url).pathname;

async function runJson(
  cmd: string,
  args: string[],
  timeoutMs: number,
): Promise<{ ok: true; value: unknown } | { ok: false; why: string }> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).spawn();
  } catch (error) {
    return { ok: false, why: `cannot start ${cmd}: ${(error as Error).message}` };
  }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, timeoutMs);
  const out = await child.output();
  clearTimeout(timer);
  const stdout = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) {
    const stderr = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join(" / ");
    return { ok: false, why: `exit ${out.code}${out.signal ? ` (${out.signal})` : ""}: ${stderr}` };
  }
  try {
    return { ok: true, value: JSON.parse(stdout.split("\n").at(-1) ?? "") };
  } catch {
    return { ok: false, why: `unreadable output: ${stdout.slice(-200)}` };
  }
}

interface PeerJson {
  version?: string;
  results: {
    what: string;
    ms: number;
    gflops?: number;
    imagesPerSecond?: number;
    /** PyTorch: the faster memory layout, and the other's time. */
    note?: string;
  }[];
}

function rowsOf(peer: string, json: PeerJson): PeerResult[] {
  return json.results.map((r) => ({
    peer: `${peer} ${json.version ?? ""}`.trim(),
    what: r.what,
    ms: r.ms,
    gflops: r.gflops ?? null,
    imagesPerSecond: r.imagesPerSecond ?? null,
    ...(r.note ? { note: r.note } : {}),
  }));
}

/**
 * PyTorch's demo-size face autoencoder step alone (bench/peers/torch_bench.py "demo-step"), in
 * milliseconds, or null when PyTorch is missing or fails: bench/kernels.ts alternates it with its
 * own step for a ratio measured under the same load.
 */
export async function torchDemoStepMs(): Promise<number | null> {
  const cuda = Deno.env.get("VA_TORCH_DEVICE") === "cuda";
  const python = Deno.env.get("VA_TORCH_PYTHON") || "/usr/bin/python3";
  const out = await runJson(
    python,
    [`${HERE}peers/torch_bench.py`, "32", "demo-step", "2", cuda ? "cuda" : "cpu"],
    300_000,
  );
  if (!out.ok) return null;
  return (out.value as PeerJson).results[0]?.ms ?? null;
}

/** Run every available peer at `batch`; `withStep` adds PyTorch's training step. */
export async function runPeers(
  batch: number,
  quick: boolean,
  _withStep: boolean,
): Promise<PeerResult[]> {
  const results: PeerResult[] = [];
  const cuda = Deno.env.get("VA_TORCH_DEVICE") === "cuda";
  const torchName = cuda ? "PyTorch CUDA" : "PyTorch CPU";
  console.error(`peers: ${torchName} ...`);
  const python = Deno.env.get("VA_TORCH_PYTHON") || "/usr/bin/python3";
  const torch = await runJson(
    python,
    [
      `${HERE}peers/torch_bench.py`,
      String(batch),
      quick ? "quick" : "full",
      "2",
      cuda ? "cuda" : "cpu",
    ],
    600_000,
  );
  if (torch.ok) {
    results.push(
      ...rowsOf(cuda ? torchName : `${torchName} (2 threads)`, torch.value as PeerJson),
    );
  } else {
    results.push({
      peer: torchName,
      what: "-",
      ms: null,
      gflops: null,
      imagesPerSecond: null,
      note: `skipped (${torch.why.slice(0, 160)})`,
    });
  }
  if (Deno.env.get("VA_TFJS") === "0") return results;
  console.error("peers: TF.js webgpu ...");
  const tfjs = await runJson(
    Deno.execPath(),
    ["run", "-A", `${HERE}peers/tfjs.ts`, String(batch), quick ? "1" : "2"],
    900_000,
  );
  if (tfjs.ok) results.push(...rowsOf("TF.js webgpu", tfjs.value as PeerJson));
  else {
    results.push({
      peer: "TF.js webgpu",
      what: "-",
      ms: null,
      gflops: null,
      imagesPerSecond: null,
      note: `skipped (${tfjs.why.slice(0, 160)})`,
    });
  }
  return results;
}
