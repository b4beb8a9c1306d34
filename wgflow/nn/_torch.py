"""The one place that imports torch, with a clear message when the ``nn`` extra is missing."""
from __future__ import annotations


def require_torch():
    """Return the ``torch`` module or raise ImportError saying how to install it."""
    try:
        import torch
    except ImportError as exc:       # pragma: no cover - depends on the environment
        raise ImportError("wgflow.nn needs PyTorch: pip install 'wgflow[nn]' "
                          "(or pip install torch)") from exc
    return torch


def require_gymnasium():
    """Return the ``gymnasium`` module or raise ImportError saying how to install it."""
    try:
        import gymnasium
    except ImportError as exc:       # pragma: no cover
        raise ImportError("this needs gymnasium: pip install 'wgflow[gym]'") from exc
    return gymnasium


def resolve_device(device: str | None = "auto"):
    """``"auto"``: CUDA when torch sees a GPU, else CPU; otherwise ``torch.device(device)``,
    refused (ValidationError) when torch cannot use it here."""
    from ..errors import ValidationError
    torch = require_torch()
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValidationError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}: "
                              f"{exc}") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValidationError(f"device {device!r} asked for, but torch sees no CUDA GPU here "
                                  "(use 'auto' or 'cpu')")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValidationError(f"device {device!r}: torch sees {torch.cuda.device_count()} "
                                  "CUDA device(s)")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValidationError(f"device {device!r} asked for, but torch sees no MPS device here "
                                  "(use 'auto' or 'cpu')")
    elif dev.type != "cpu":
        raise ValidationError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}")
    return dev
