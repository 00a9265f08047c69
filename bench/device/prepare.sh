#!/usr/bin/env bash
# Run here (a machine with npm and Debian registries) before lending a GPU machine that reaches
# nothing: packs what bench/device/run.sh needs into .devrun/ and .gl/ (both gitignored), to be
# carried with the call (the library's device tool: carry [".devrun", ".gl"]).
# - .devrun/deno.xz: this machine's Deno binary, xz-compressed (~31 MB; the npm tarball is 42 MB);
# - .devrun/denodir.tar.xz: the npm packages the engine, tests and bench import, from this
#   machine's Deno cache (run `deno task test` once first), less TF.js (~290 MB: that peer is left
#   out there, VA_TFJS=0);
# - .devrun/deno.device.json: deno.json without the TF.js imports (Deno resolves every npm import
#   of the config's lockfile, and the device has no registry to fetch them from);
# - .gl/: the Vulkan and GL loader packages (the device image has the NVIDIA driver, no loader).
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .devrun .gl
deno_bin="$(readlink -f "$(command -v deno)")"
xz -T2 -6 -c "$deno_bin" >.devrun/deno.xz
cache="$(deno info --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["npmCache"])')"
stage="$(mktemp -d)"
mkdir -p "$stage/npm/registry.npmjs.org"
for package in zod imagescript @webgpu; do
  cp -r "$cache/registry.npmjs.org/$package" "$stage/npm/registry.npmjs.org/"
done
tar -C "$stage" -cJf .devrun/denodir.tar.xz npm
rm -rf "$stage"
python3 - <<'PY'
import json
config = json.load(open("deno.json"))
config["imports"] = {k: v for k, v in config["imports"].items() if "tensorflow" not in k}
json.dump(config, open(".devrun/deno.device.json", "w"), indent=2)
PY
lists=/tmp/amd64-lists
mkdir -p "$lists/partial"
apt_options=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists")
apt-get "${apt_options[@]}" update -qq
(cd .gl && apt-get "${apt_options[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 \
  libglx0 libgles2)
du -sh .devrun .gl
