"""PyTorch CPU peer of bench/kernels.ts: the same conv (3x3, 32->32, 64x64) forward and
forward+backward, the same autoencoder training steps (bench/step.ts: the conv autoencoder and
the paper's face autoencoder at the demo's and the paper's sizes), and the demo regressor's
step (ResNet34 at width 1/8 on 64x64 faces, as bench/profile_step.ts times it), on 2 threads.
Prints one JSON object on stdout."""
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

batch = int(sys.argv[1]) if len(sys.argv) > 1 else 64
quick = len(sys.argv) > 2 and sys.argv[2] == "quick"
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
torch.set_num_threads(threads)
torch.manual_seed(0)
results = []


def timed(fn, reps):
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps * 1000


x = torch.randn(batch, 32, 64, 64)
w = torch.randn(32, 32, 3, 3, requires_grad=True)
flops = 2 * batch * 32 * 64 * 64 * 32 * 9
with torch.no_grad():
    ms = timed(lambda: F.conv2d(x, w, padding=1), 3 if quick else 5)
results.append({"what": "conv fwd 32->32 @64", "ms": ms, "gflops": flops / ms / 1e6})
xg = x.clone().requires_grad_(True)


def fwd_bwd():
    y = F.conv2d(xg, w, padding=1)
    y.backward(torch.ones_like(y))


ms = timed(fwd_bwd, 2 if quick else 4)
results.append({"what": "conv fwd+bwd 32->32 @64", "ms": ms, "gflops": 3 * flops / ms / 1e6})

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


model = AE()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
images = torch.rand(batch, 3, 64, 64)


def step():
    opt.zero_grad(set_to_none=True)
    loss = F.mse_loss(model(images), images)
    loss.backward()
    opt.step()


ms = timed(step, 2 if quick else 5)
results.append({"what": f"train step (batch {batch})", "ms": ms,
                "imagesPerSecond": batch * 1000 / ms})


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
    if quick and size == "paper":
        continue
    face_batch = 8 if quick else face_batch
    face_model = FaceAE(widths)
    face_opt = torch.optim.Adam(face_model.parameters(), lr=1e-4)
    image_i, image_j = torch.rand(face_batch, 3, 64, 64), torch.rand(face_batch, 3, 64, 64)
    valence, arousal = torch.rand(face_batch) * 2 - 1, torch.rand(face_batch) * 2 - 1

    def face_step():
        face_opt.zero_grad(set_to_none=True)
        face_model.loss(image_i, valence, arousal, image_j, arousal, valence).backward()
        face_opt.step()

    face_step()
    ms = timed(face_step, 2 if quick else 10 if size == "demo" else 3)
    results.append({"what": f"train step face AE {size} (batch {face_batch})", "ms": ms,
                    "imagesPerSecond": face_batch * 1000 / ms})

regressor = resnet34(1 / 8)
regressor_opt = torch.optim.Adam(regressor.parameters(), lr=1e-3)
faces = torch.rand(32, 3, 64, 64)
targets = torch.rand(32, 2) * 2 - 1


def regressor_step():
    regressor_opt.zero_grad(set_to_none=True)
    F.mse_loss(regressor(faces), targets).backward()
    regressor_opt.step()


ms = timed(regressor_step, 3 if quick else 10)
results.append({"what": "train step resnet34 w1/8 @64 (batch 32)", "ms": ms,
                "imagesPerSecond": 32 * 1000 / ms})
print(json.dumps({"version": torch.__version__, "threads": threads, "results": results}))
