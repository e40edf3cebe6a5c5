#!/usr/bin/python3
"""The work of bench_train_throughput in Python PyTorch, for a side-by-side comparison.

Mirrors what workers/trainer.cc does for one trial segment of two epochs (a warm-up epoch,
then the timed one), on the first CUDA GPU when there is one (as the Trainer), else the CPU:
  * data: the CIFAR-10 binary files of --data (data_batch_1.bin .. data_batch_5.bin,
    whichever exist, the first --train-samples images), as float x / 255 normalised per
    channel with the training set's mean and (unbiased) std, clamped at 1e-6;
  * model: lenet or resnet18 exactly as workers/models.h lays them out (the parameter
    counts are asserted), initialised the same way;
  * training: per epoch a randperm from a generator seeded with seed + epoch, batches by
    index_select, cross entropy, SGD(lr 0.01, momentum 0.9), step() then
    zero_grad(set_to_none=True) (the trainer's DropGradients),
    loss.item() after every step (the trainer's divergence check, outside the timing);
  * threads: torch.set_num_threads(T) and torch.set_num_interop_threads(T), as Trainer(T);
  * device: the data stays in host memory, each batch is copied to the device after
    index_select; on a GPU the clock is read after torch.cuda.synchronize(), as the
    Trainer's Now();
  * timing: per step, batch assembly + forward and loss + backward + step and zero_grad,
    summed over the epoch (CurvePoint.compute_s). The trainer's evaluation after each
    epoch is untimed there and left out here.

Run with Debian's python3-torch (/usr/bin/python3): the same LibTorch 1.13.1 shared
libraries that libtorch-dev links the worker against. Prints one line, or one JSON line
with --json, with the same fields as bench_train_throughput --json.
"""

import argparse
import json
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

LEARNING_RATE = 0.01
MOMENTUM = 0.9
PARAMETER_COUNTS = {"lenet": 62006, "resnet18": 11173962}  # at 3x32x32, 10 classes


# ---- data (workers/dataset.cc ReadCifar10, workers/trainer.cc LoadData) ----

def read_cifar10_train(data_dir, max_samples):
    """Images [N, 3, 32, 32] uint8 and labels [N] int64 of the training files."""
    record = 1 + 3 * 32 * 32
    chunks = []
    for i in range(1, 6):
        path = os.path.join(data_dir, "data_batch_%d.bin" % i)
        if not os.path.exists(path):
            continue
        with open(path, "rb") as f:
            raw = f.read()
        if len(raw) % record != 0:
            sys.exit("%s: %d bytes is not a whole number of %d-byte records"
                     % (path, len(raw), record))
        chunks.append(torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(-1, record))
    if not chunks:
        sys.exit("no data_batch_*.bin in " + data_dir)
    records = torch.cat(chunks)
    if max_samples > 0:
        records = records[:max_samples]
    labels = records[:, 0].to(torch.int64)
    images = records[:, 1:].reshape(-1, 3, 32, 32).contiguous()
    return images, labels


def normalised(images_u8):
    images = images_u8.to(torch.float32).div_(255.0)
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return images.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))


# ---- models (workers/models.h, workers/models.cc) ----

class LeNet(nn.Module):
    """conv5x5(3, 6)-ReLU-maxpool(2)-conv5x5(6, 16)-ReLU-maxpool(2)-flatten-fc(400, 120)-
    ReLU-fc(120, 84)-ReLU-fc(84, classes); PyTorch's default initialisation."""

    def __init__(self, channels=3, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 6, kernel_size=5)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class BasicBlock(nn.Module):
    """conv3x3(s)-BN-ReLU-conv3x3-BN plus identity or conv1x1(s)-BN; ReLU after the sum.
    Submodules in the C++ registration order: conv1, bn1, conv2, bn2, downsample."""

    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, padding=0, bias=False),
                nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


class ResNet18(nn.Module):
    """torchvision's ResNet-18 with the CIFAR stem (conv3x3(in, 64, stride 1)-BN-ReLU, no
    max-pool), for 32x32 inputs; convs Kaiming normal (fan_out, ReLU), BN 1 and 0, fc at
    PyTorch's default."""

    def __init__(self, channels=3, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        inplanes = 64
        for stage, planes in enumerate([64, 128, 256, 512]):
            blocks = []
            for i in range(2):
                blocks.append(BasicBlock(inplanes, planes, 2 if stage > 0 and i == 0 else 1))
                inplanes = planes
            setattr(self, "layer%d" % (stage + 1), nn.Sequential(*blocks))
        self.fc = nn.Linear(inplanes, classes)
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
                elif isinstance(module, nn.BatchNorm2d):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)

    def forward(self, images):
        x = F.relu(self.bn1(self.conv1(images)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
        return self.fc(x)


MODELS = {"lenet": LeNet, "resnet18": ResNet18}


# ---- training (workers/trainer.cc Trainer::Impl::Train) ----

def device_clock(device):
    """time.perf_counter once the device has finished the work queued so far."""
    if device.type != "cuda":
        return time.perf_counter

    def clock():
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return clock


def train_epoch(model, optimizer, images, labels, batch, seed, epoch, device):
    """One epoch; returns (compute_s, data_s, forward_s, backward_s, optimizer_s, step
    seconds, mean train loss)."""
    model.train()
    count = images.size(0)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed + epoch))
    data_s = forward_s = backward_s = optimizer_s = 0.0
    steps = []
    loss_sum = 0.0
    clock = device_clock(device)
    for begin in range(0, count, batch):
        t0 = clock()
        end = min(begin + batch, count)
        index = order[begin:end]
        batch_images = images.index_select(0, index).to(device)
        batch_labels = labels.index_select(0, index).to(device)
        t1 = clock()
        loss = F.cross_entropy(model(batch_images), batch_labels)
        t2 = clock()
        loss.backward()
        t3 = clock()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)  # the trainer's DropGradients
        t4 = clock()
        data_s += t1 - t0
        forward_s += t2 - t1
        backward_s += t3 - t2
        optimizer_s += t4 - t3
        steps.append(t4 - t0)
        loss_value = loss.item()
        if loss_value != loss_value or abs(loss_value) == float("inf"):
            sys.exit("diverged at epoch %d" % epoch)
        loss_sum += loss_value * (end - begin)
    compute_s = data_s + forward_s + backward_s + optimizer_s
    return compute_s, data_s, forward_s, backward_s, optimizer_s, steps, loss_sum / count


def median_rank(values):
    """The trainer's Percentile(values, 0.5): nearest rank."""
    values = sorted(values)
    rank = max(1, -(-len(values) // 2))
    return values[rank - 1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 binary dataset folder")
    parser.add_argument("--model", default="lenet", choices=sorted(MODELS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-samples", type=int, default=0, help="first N (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--deterministic", action="store_true",
                        help="ask cuDNN for deterministic algorithms, no autotuning (GPU runs; "
                        "the C++ twin's --deterministic asks the same)")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()

    # Trainer(threads): set_num_threads, then set_num_interop_threads before any inter-op
    # work.
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)

    images_u8, labels = read_cifar10_train(args.data, args.train_samples)
    images = normalised(images_u8)

    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if args.deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    torch.manual_seed(args.seed)
    model = MODELS[args.model]()
    parameters = sum(p.numel() for p in model.parameters())
    assert parameters == PARAMETER_COUNTS[args.model], (
        "%s has %d parameters, the C++ model %d" % (args.model, parameters,
                                                    PARAMETER_COUNTS[args.model]))
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)

    warmup = train_epoch(model, optimizer, images, labels, args.batch, args.seed, 1,
                         device)
    cpu_begin, wall_begin = time.process_time(), time.perf_counter()
    faults_begin = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    compute_s, data_s, forward_s, backward_s, optimizer_s, steps, loss = train_epoch(
        model, optimizer, images, labels, args.batch, args.seed, 2, device)
    # CPU seconds of the timed epoch, and per wall second: about `threads` on a quiet
    # machine. samples / cpu_s does not count the time the process waited for a core.
    cpu_s = time.process_time() - cpu_begin
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_begin
    cpu_per_wall = cpu_s / (time.perf_counter() - wall_begin)
    samples = images.size(0)
    result = {
        "impl": "python", "device": device.type, "model": args.model, "batch": args.batch,
        "threads": args.threads,
        "samples": samples, "samples_per_s": samples / compute_s, "compute_s": compute_s,
        "data_s": data_s, "forward_s": forward_s, "backward_s": backward_s,
        "optimizer_s": optimizer_s, "data_share": data_s / compute_s,
        "step_ms_p50": 1000.0 * median_rank(steps), "cpu_s": cpu_s,
        "samples_per_cpu_s": samples / cpu_s, "cpu_per_wall": cpu_per_wall,
        "page_faults_per_step": faults / len(steps),
        "warmup_loss": warmup[-1],
        "train_loss": loss,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print("Python PyTorch %s on %s  batch %d  threads %d: %.1f samples/s (%d samples in "
              "%.3f s; "
              "data %.1f%%, forward %.3f s, backward %.3f s, optimizer %.3f s; step p50 %.2f "
              "ms; CPU/wall %.2f; %.0f page faults per step; train loss %.4f)" % (
                  args.model, device.type, args.batch, args.threads, result["samples_per_s"],
                  samples,
                  compute_s, 100.0 * result["data_share"], forward_s, backward_s, optimizer_s,
                  result["step_ms_p50"], cpu_per_wall, result["page_faults_per_step"], loss))


if __name__ == "__main__":
    main()
