"""Solutions to notebook 11 (on a GPU)."""

from __future__ import annotations

import math
import time

import numpy as np

import minigrad as mg
import minigrad.nn.functional as F
from minigrad.data import DataLoader


def time_parts(make_cnn, train_set, device, batch_size=64, steps=30, warmup=3):
    """Exercise 1: mean seconds per step moving the batch, in forward + loss, in backward +
    step; synchronised around each part so that the clock reads finished work."""
    mg.manual_seed(0)
    net = make_cnn().to(device)
    opt = mg.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    batches = iter(DataLoader(train_set, batch_size=batch_size, shuffle=True, seed=0))
    spent = np.zeros(3)
    for k in range(warmup + steps):
        images, labels = next(batches)
        mg.synchronize(device)
        t0 = time.perf_counter()
        images, labels = images.to(device), labels.to(device)
        mg.synchronize(device)
        t1 = time.perf_counter()
        loss = F.cross_entropy(net(images), labels)
        mg.synchronize(device)
        t2 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        opt.step()
        mg.synchronize(device)
        t3 = time.perf_counter()
        if k >= warmup:
            spent += (t1 - t0, t2 - t1, t3 - t2)
    return tuple(spent / steps)


def throughput(time_steps, device, sizes=(16, 64, 256, 1024), images=2048):
    """Exercise 2: images per second for each batch size (about ``images`` per measurement)."""
    return {b: b / time_steps(device, b, max(2, images // b)) for b in sizes}


def train_watching(model, opt, batches, every=100, limit=10.0):
    """Exercise 3: sum the loss on the device and read it (one sync) every ``every`` steps;
    stop when the mean is not finite or above ``limit``. Returns (steps run, diverged)."""
    device = next(iter(model.parameters())).device
    total, count, step = mg.zeros((), device=device), 0, 0
    for images, labels in batches:
        loss = F.cross_entropy(model(images), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        total, count = total + loss.detach(), count + 1
        if step % every == 0:
            mean = total.item() / count   # the one wait in `every` steps
            if not math.isfinite(mean) or mean > limit:
                return step, True
            total, count = mg.zeros((), device=device), 0
    return step, False
