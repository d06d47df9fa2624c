"""The Hugging Face hub as models and data sets reach it, in one place: whether a name is meant as a
local path, whether the hub answers, and offline mode.

huggingface_hub 1.x has a public `is_offline_mode()`; 0.x (the one transformers 4.x needs) has only
the `HF_HUB_OFFLINE` constant; both are read here, and both run in the tests (`make test` on the lock,
`make test-oldest`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import huggingface_hub
from huggingface_hub import constants as hub_constants
from huggingface_hub import get_session

HUB_TIMEOUT_S = 5.0


def looks_local(name: str, suffixes: set[str]) -> bool:
    """Whether `name` is meant as a local path, not a hub id: it starts with ./, ../, / or ~, ends in
    one of `suffixes`, or its first folder exists here."""
    path = Path(name)
    return (
        name.startswith(("./", "../", "/", "~"))
        or path.suffix.lower() in suffixes
        or (len(path.parts) > 1 and Path(path.parts[0]).exists())
    )


def offline_mode() -> bool:
    """Whether HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, as huggingface_hub reads it."""
    check = getattr(huggingface_hub, "is_offline_mode", None) or getattr(hub_constants, "is_offline_mode", None)
    return bool(check()) if check is not None else bool(hub_constants.HF_HUB_OFFLINE)


def hub_reachable() -> bool:
    """Whether the hub answers within HUB_TIMEOUT_S (never in offline mode)."""
    if offline_mode():
        return False
    try:
        get_session().head(hub_constants.ENDPOINT, timeout=HUB_TIMEOUT_S)
    except Exception:  # any failure to connect (DNS, refused, timeout, proxy): unreachable
        return False
    return True


def unreachable_reason() -> str:
    """Why the hub is not asked: offline mode, or no answer."""
    return "HF_HUB_OFFLINE is set" if offline_mode() else f"no answer from {hub_constants.ENDPOINT}"


@contextmanager
def offline() -> Iterator[None]:
    """Offline mode inside the block, for huggingface_hub and for `datasets` (which keeps its own
    copy of the flag, read when it loads): they read their local caches only and fail at once."""
    config = getattr(sys.modules.get("datasets"), "config", None)
    saved = hub_constants.HF_HUB_OFFLINE, getattr(config, "HF_HUB_OFFLINE", None)
    hub_constants.HF_HUB_OFFLINE = True
    if config is not None:
        config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = saved[0]
        if config is not None:
            config.HF_HUB_OFFLINE = saved[1]
