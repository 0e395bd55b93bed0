"""How much memory a training step takes, and keeping it: the micro-batch a pass runs at, and glibc's
habit of handing freed blocks back to the kernel."""

from __future__ import annotations

import copy
import ctypes
import math
import os
import sys

import torch

from ..model import SqueezeNet, summary


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory in the process. By default each large block (an activation, a gradient)
    is its own mapping, returned to the kernel when freed, so every training step faults all of them in again
    as fresh zeroed pages: kernel time that grows with the batch. Kept, the next step reuses them. Affects the
    whole process and only allocations made after the call; returns whether the C library took the setting
    (False off glibc, e.g. macOS or musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # from glibc's malloc.h
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 1 << 30))


# On the CPU a forward pass whose activations reach far beyond the caches runs slower per image: 1_1 at 224x224
# in two single-threaded processes trained at 27-30 img/s with 16-24 images per pass and 22-24 img/s with 64.
CPU_ACTIVATION_BUDGET = 1 << 30  # bytes of estimated activations per forward pass (1_1 at 224: 24 images)


def micro_batch(model: SqueezeNet, image_size: int, per_process: int, device: torch.device) -> int:
    """On CUDA the largest micro-batch that fits, measured; on the CPU the largest whose estimated activations
    stay within CPU_ACTIVATION_BUDGET (or an eighth of the RAM), where the per-image speed is best."""
    if device.type == "cuda":
        size = per_process
        probe = copy.deepcopy(model).to(device)  # its batch-norm statistics must not move
        while size > 1:
            try:
                with torch.random.fork_rng(devices=[device]):
                    probe(torch.zeros(size, 3, image_size, image_size, device=device)).sum().backward()
                break
            except torch.cuda.OutOfMemoryError:
                size //= 2
                torch.cuda.empty_cache()
        del probe
        torch.cuda.empty_cache()
        return max(1, size)
    table = summary(model, image_size)
    per_image = 16 * sum(math.prod(layer.output[image_size]) for layer in table.layers)  # 4 bytes x ~4 copies
    budget = min(CPU_ACTIVATION_BUDGET, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 8) \
        if hasattr(os, "sysconf") else CPU_ACTIVATION_BUDGET
    return max(1, min(per_process, budget // per_image))
