"""PyTorch CPU peer of bench/kernels.ts: the same conv (3x3, 32->32, 64x64) forward and
forward+backward, the same autoencoder training steps (bench/step.ts: the conv autoencoder and
the paper's face autoencoder at the demo's and the paper's sizes), and the demo regressor's
step (ResNet34 at width 1/8 on 64x64 faces, as bench/profile_step.ts times it), on 2 threads.
Each measure runs in both memory layouts, NCHW (PyTorch's default) and channels_last, and keeps
the faster: which one wins depends on the CPU (oneDNN's blocked kernels reorder NCHW tensors at
every call; on one AMD EPYC machine that made the default 3x slower). Prints one JSON object on
stdout.
A fourth argument "cuda" runs every measure on the GPU instead (PyTorch CUDA, the peer of a run
on an NVIDIA machine: bench/nvidia.sh), synchronizing before each clock read and repeating each
measure 20 times as often.
A second argument "demo-step" times only the demo-size face autoencoder step, the fastest of 3
blocks of 10 steps per layout (bench/kernels.ts runs it a few times, alternating with its own,
for a ratio measured under the same load)."""
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

batch = int(sys.argv[1]) if len(sys.argv) > 1 else 64
quick = len(sys.argv) > 2 and sys.argv[2] == "quick"
demo_only = len(sys.argv) > 2 and sys.argv[2] == "demo-step"
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
device = sys.argv[4] if len(sys.argv) > 4 else "cpu"
if device == "cuda" and not torch.cuda.is_available():
    sys.exit("torch_bench.py: cuda asked for, but torch.cuda.is_available() is False")
torch.set_num_threads(threads)
if device != "cpu":
    torch.set_default_device(device)  # PyTorch >= 2.0; Debian's 1.13 runs the CPU measures
torch.manual_seed(0)
results = []


def synchronize():
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, reps):
    # GPU work is asynchronous: warm up, then synchronize around the timed repetitions.
    reps = reps * 20 if device == "cuda" else reps
    fn()
    synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    synchronize()
    return (time.perf_counter() - t0) / reps * 1000


LAYOUTS = [("NCHW", torch.contiguous_format), ("channels_last", torch.channels_last)]


def best(what, build, reps, work, tries=1):
    """Time build(memory_format)() in both layouts and keep the faster; the note names it and
    the other layout's time. `work(ms)` gives the row's rate fields. With `tries`, each layout's
    time is the fastest of that many timings (the least disturbed by other load)."""
    times = {}
    for name, fmt in LAYOUTS:
        run = build(fmt)
        times[name] = min(timed(run, reps) for _ in range(tries))
    name = min(times, key=times.get)
    other = next(n for n in times if n != name)
    results.append({"what": what, "ms": times[name], **work(times[name]),
                    "note": f"{name} ({other} {times[other]:.0f} ms)"})


def images_per_second(images):
    return lambda ms: {"imagesPerSecond": images * 1000 / ms}


x = torch.randn(batch, 32, 64, 64)
w = torch.randn(32, 32, 3, 3)
flops = 2 * batch * 32 * 64 * 64 * 32 * 9


def conv_fwd(fmt):
    xf, wf = x.contiguous(memory_format=fmt), w.contiguous(memory_format=fmt)

    def run():
        with torch.no_grad():
            F.conv2d(xf, wf, padding=1)
    return run


def conv_fwd_bwd(fmt):
    xg = x.contiguous(memory_format=fmt).requires_grad_(True)
    wg = w.contiguous(memory_format=fmt).requires_grad_(True)

    def run():
        y = F.conv2d(xg, wg, padding=1)
        y.backward(torch.ones_like(y))
    return run


if not demo_only:
    best("conv fwd 32->32 @64", conv_fwd, 3 if quick else 5,
         lambda ms: {"gflops": flops / ms / 1e6})
    best("conv fwd+bwd 32->32 @64", conv_fwd_bwd, 2 if quick else 4,
         lambda ms: {"gflops": 3 * flops / ms / 1e6})


def training(model, lr, inputs, loss):
    """A step of Adam on `loss(model, *inputs)`."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def run():
        opt.zero_grad(set_to_none=True)
        loss(model, *inputs).backward()
        opt.step()
    return run


ENCODER = [(3, 32), (32, 64), (64, 128), (128, 256)]
DECODER = [(256, 128), (128, 64), (64, 32), (32, 3)]


class AE(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(),
                           nn.MaxPool2d(2)) for i, o in ENCODER])
        dec = []
        for k, (i, o) in enumerate(DECODER):
            last = k == len(DECODER) - 1
            layers = [nn.Upsample(scale_factor=2, mode="nearest"),
                      nn.Conv2d(i, o, 3, padding=1, bias=last)]
            layers += [nn.Sigmoid()] if last else [nn.BatchNorm2d(o), nn.ReLU()]
            dec.append(nn.Sequential(*layers))
        self.dec = nn.ModuleList(dec)

    def forward(self, h):
        for m in self.enc:
            h = m(h)
        for m in self.dec:
            h = m(h)
        return h


images = torch.rand(batch, 3, 64, 64)
if not demo_only:
    best(f"train step (batch {batch})",
         lambda fmt: training(AE().to(memory_format=fmt), 1e-3,
                              [images.contiguous(memory_format=fmt)],
                              lambda m, im: F.mse_loss(m(im), im)),
         2 if quick else 5, images_per_second(batch))


class Block(nn.Module):
    """torchvision's BasicBlock."""

    def __init__(self, i, o, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(i, o, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(o)
        self.conv2 = nn.Conv2d(o, o, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(o)
        self.down = None
        if stride != 1 or i != o:
            self.down = nn.Sequential(nn.Conv2d(i, o, 1, stride, bias=False), nn.BatchNorm2d(o))

    def forward(self, x):
        skip = x if self.down is None else self.down(x)
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + skip)


def resnet34(width):
    c = [int(64 * width * m) for m in (1, 2, 4, 8)]
    layers = [nn.Conv2d(3, c[0], 7, 2, 3, bias=False), nn.BatchNorm2d(c[0]), nn.ReLU(),
              nn.MaxPool2d(3, 2, 1)]
    channels = c[0]
    for k, (o, n) in enumerate(zip(c, (3, 4, 6, 3))):
        for j in range(n):
            layers.append(Block(channels, o, 2 if j == 0 and k > 0 else 1))
            channels = o
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 2))


class FaceAE(nn.Module):
    """The paper's face autoencoder as nn/models/autoencoder.ts builds it (conditioning through
    the first linear layer, image output): encoder [conv3x3, BN, ReLU, max-pool] per width, a
    linear head to (z, v, a), a linear layer from (z, v, a) back to the bottleneck map, decoder
    [upsample x2, conv3x3, BN, ReLU] per width, a last conv3x3 to 3 channels and a sigmoid."""

    def __init__(self, widths, code=32, side=64):
        super().__init__()
        enc, c = [], 3
        for w in widths:
            enc += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2)]
            c = w
        self.encoder = nn.Sequential(*enc)
        self.side = side // 2 ** len(widths)
        self.last = c
        flat = c * self.side * self.side
        self.code = code
        self.head = nn.Linear(flat, code + 2)
        self.decoder_input = nn.Linear(code + 2, flat)
        dec = []
        for w in reversed(widths):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, w, 3, padding=1),
                    nn.BatchNorm2d(w), nn.ReLU()]
            c = w
        self.decoder = nn.Sequential(*dec, nn.Conv2d(c, 3, 3, padding=1), nn.Sigmoid())

    def loss(self, image_i, valence_i, arousal_i, image_j, valence_j, arousal_j):
        """The paper's loss: 0.5 MSE(v_i) + 0.5 MSE(a_i) + MSE(D(z_i, v_j, a_j), I_j)."""
        head = self.head(self.encoder(image_i).flatten(1))
        z, v, a = head[:, :self.code], head[:, self.code], head[:, self.code + 1]
        code = torch.cat([z, valence_j[:, None], arousal_j[:, None]], 1)
        h = F.relu(self.decoder_input(code)).view(-1, self.last, self.side, self.side)
        return (0.5 * F.mse_loss(v, valence_i) + 0.5 * F.mse_loss(a, arousal_i) +
                F.mse_loss(self.decoder(h), image_j))


# The demo preset's autoencoder (widths "tiny", batch 32) and the paper's (64-128-256-512, batch
# 64), as bench/step.ts faceAutoencoderStepBench trains them; batch 8 and the demo size only
# when quick.
for size, widths, face_batch in [("demo", [8, 16, 16, 32], 32), ("paper", [64, 128, 256, 512], 64)]:
    if (quick or demo_only) and size == "paper":
        continue
    face_batch = 8 if quick else face_batch
    image_i, image_j = torch.rand(face_batch, 3, 64, 64), torch.rand(face_batch, 3, 64, 64)
    valence, arousal = torch.rand(face_batch) * 2 - 1, torch.rand(face_batch) * 2 - 1

    def face_training(fmt, widths=widths):
        run = training(FaceAE(widths).to(memory_format=fmt), 1e-4,
                       [image_i.contiguous(memory_format=fmt), valence, arousal,
                        image_j.contiguous(memory_format=fmt), arousal, valence],
                       lambda m, *a: m.loss(*a))
        run()
        return run

    best(f"train step face AE {size} (batch {face_batch})", face_training,
         2 if quick else 10 if size == "demo" else 3, images_per_second(face_batch),
         3 if demo_only else 1)

if not demo_only:
    faces = torch.rand(32, 3, 64, 64)
    targets = torch.rand(32, 2) * 2 - 1
    best("train step resnet34 w1/8 @64 (batch 32)",
         lambda fmt: training(resnet34(1 / 8).to(memory_format=fmt), 1e-3,
                              [faces.contiguous(memory_format=fmt)],
                              lambda m, f: F.mse_loss(m(f), targets)),
         3 if quick else 10, images_per_second(32))
    # The paper's regressor (ResNet34 at full width on 224x224 faces, batch 32): on a GPU only (about
    # 11 GFLOP per image and step, minutes on two CPU threads).
    if device == "cuda" and not quick:
        faces224 = torch.rand(32, 3, 224, 224)
        best("train step resnet34 w1 @224 (batch 32)",
             lambda fmt: training(resnet34(1).to(memory_format=fmt), 1e-4,
                                  [faces224.contiguous(memory_format=fmt)],
                                  lambda m, f: F.mse_loss(m(f), targets)),
             3, images_per_second(32))
print(json.dumps({"version": torch.__version__, "threads": threads, "device": device,
                  "results": results}))
