"""The devices a command line may name, read without importing torch: `auto`, `cpu`, `cuda`
or `cuda:N`. Training (`microgpt_torch.device.pick_device`) and the checker (`compare`) read
`--device` here, so both take the same names and refuse a wrong one with the same error.

    parse_device("cuda:1")  # ("cuda", 1)
    parse_device("tpu")     # DeviceError: unknown device 'tpu'; choose auto, cpu, cuda or cuda:N
"""
from __future__ import annotations

DEVICE_NAMES = "auto, cpu, cuda or cuda:N"


class DeviceError(ValueError):
    """A device name that is none of DEVICE_NAMES, or a device this machine does not have; the
    message is one line."""


def parse_device(name: str) -> tuple[str, int | None]:
    """("auto", "cpu" or "cuda", and the CUDA device's number if the name gives one)."""
    kind, colon, number = name.partition(":")
    if kind in ("auto", "cpu", "cuda") and not colon:
        return kind, None
    if kind == "cuda" and number.isdigit() and number.isascii() and str(int(number)) == number:
        return kind, int(number)
    raise DeviceError(f"unknown device {name!r}; choose {DEVICE_NAMES}")
