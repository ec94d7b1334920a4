"""Peak bytes of live tensors, counted on any device (the CPU included), as ``torch.cuda.max_memory_allocated``
counts them on a GPU: ``with LiveTensorBytes() as t: ...; t.peak``.

A TorchDispatchMode sees the output of every ATen operation run inside it; each new storage is counted
once (views and in-place results share their storage) with its byte size, and uncounted when the storage is
freed (torch keeps one Python object per storage, so a finalizer on it fires when the memory is released).
Storages that existed before entering (model parameters, inputs) are not counted. Allocations made outside
torch's operators (numpy arrays, ``torch.from_numpy``) are invisible: measure statistics with
``stats.force_path("torch")``, the elementwise path a GPU runs. No caching allocator is modelled: the figure
is the sum of live tensors, what the footprint model predicts, not a card's reserved memory.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveTensorBytes(TorchDispatchMode):
    """Live and peak bytes of the storages created inside the mode (``live``, ``peak``; ``reset_peak()``)."""

    def __init__(self, ignore=()):
        super().__init__()
        self._sizes: dict[int, int] = {}
        self._known = {id(t.untyped_storage()) for t in ignore if isinstance(t, torch.Tensor)}
        self._keep = [t.untyped_storage() for t in ignore if isinstance(t, torch.Tensor)]  # ids stay unique
        self.live = 0
        self.peak = 0

    def reset_peak(self) -> None:
        self.peak = self.live

    def _freed(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            st = t.untyped_storage()
            key = id(st)
            if key in self._sizes or key in self._known:
                continue
            self._sizes[key] = st.nbytes()
            self.live += st.nbytes()
            weakref.finalize(st, self._freed, key)
        self.peak = max(self.peak, self.live)
        return out
