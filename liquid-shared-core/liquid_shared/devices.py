"""Device and dtype choice for model loading.

On CUDA we always load with an explicit ``device_map={"": "cuda:0"}`` (never ``"auto"``: that
path leaves weights on the meta device when memory estimates are off, which broke the system this
stack replaces). bf16 where the GPU supports it, fp16 otherwise; fp32 on CPU.

``int8`` (CPU only) loads fp32 weights and then stores every linear layer, the output head
included, as int8 (``models.quantize``): compute stays fp32 around int8 matrix products.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Placement:
    device: torch.device
    dtype: torch.dtype  # the dtype weights load in (and activations run in)
    int8_weights: bool = False  # then linear layers are quantised to int8 after loading (CPU)

    @property
    def label(self) -> str:
        """The weights' precision as a user names it: 'float32', 'bfloat16', ..., or 'int8'."""
        return "int8" if self.int8_weights else str(self.dtype).removeprefix("torch.")

    @property
    def device_map(self) -> dict[str, str] | None:
        """What to pass to ``from_pretrained(device_map=...)``: explicit on CUDA, None on CPU."""
        if self.device.type == "cuda":
            return {"": f"cuda:{self.device.index or 0}"}
        return None

    def load_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"dtype": self.dtype}
        if self.device_map is not None:
            kwargs["device_map"] = self.device_map
        return kwargs


_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def parse_dtype(name: str | torch.dtype | None) -> torch.dtype | None:
    if name is None or isinstance(name, torch.dtype):
        return name
    try:
        return _DTYPES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use one of {sorted(set(_DTYPES) | {'int8'})}") from None


def resolve_placement(device: str | None = None, dtype: str | torch.dtype | None = None) -> Placement:
    """Pick device and dtype. ``device`` may be 'cpu', 'cuda' or 'cuda:N'; None = CUDA if available.
    ``dtype`` 'int8' means fp32 with int8 linear layers, on a CPU only."""
    if device in (None, "auto"):
        dev = torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError(f"device {device!r} requested but CUDA is not available; use device='cpu'")
            if dev.index is None:
                dev = torch.device("cuda:0")
    if isinstance(dtype, str) and dtype.lower() == "int8":
        if dev.type != "cpu":
            raise ValueError(f"dtype 'int8' runs on a CPU only (PyTorch's x86 int8 kernels); device {str(dev)!r} "
                             "needs 'bf16', 'fp16' or 'fp32'")
        return Placement(device=dev, dtype=torch.float32, int8_weights=True)
    chosen = parse_dtype(dtype)
    if chosen is None:
        if dev.type == "cuda":
            chosen = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            chosen = torch.float32
    return Placement(device=dev, dtype=chosen)


def free_device_memory_bytes(device: torch.device) -> int:
    """Free memory on the device (CUDA: driver-reported; CPU: available RAM)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)
