"""Reaching the Hugging Face hub, or saying quickly and plainly that it cannot be reached.

`from_pretrained` and `load_dataset` retry for half a minute when there is no network. Before
either goes to the hub we send one HEAD request to the hub endpoint through huggingface_hub's own
HTTP session (so `HTTPS_PROXY` and `HF_ENDPOINT` mirrors work as they do for every download) with
a short timeout, so an offline user gets a one-line answer in seconds. In offline mode
(`HF_HUB_OFFLINE=1` or `TRANSFORMERS_OFFLINE=1`, as huggingface_hub reads them) nothing goes to
the network at all: the libraries then read their local cache. Repository ids are checked with
huggingface_hub's validator, the same rules the hub applies (`my--model` is refused).
"""

from __future__ import annotations

import os

from huggingface_hub import constants
from huggingface_hub.utils import HFValidationError, get_session, validate_repo_id

from .errors import CnnvitError


def looks_like_repo_id(name: str) -> bool:
    """True if `name` is a valid hub repository id (`name` or `owner/name`)."""
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def offline_mode() -> bool:
    """True when the user asked the Hugging Face libraries to stay offline.

    huggingface_hub folds `HF_HUB_OFFLINE` and `TRANSFORMERS_OFFLINE` into one flag when it is
    imported; transformers and datasets obey that same flag, so cnnvit asks it rather than the
    environment, and agrees with them by construction.
    """
    return bool(constants.HF_HUB_OFFLINE)


def hub_endpoint() -> str:
    """The hub endpoint: `HF_ENDPOINT` (a mirror) or huggingface.co."""
    # Read at call time too, so a mirror set after huggingface_hub was imported is probed.
    return os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")


def hub_reachable(timeout_seconds: float = 3.0) -> bool:
    """One HEAD request to the hub endpoint; False on any failure within the timeout.

    Any HTTP answer (even an error status) means the hub can be reached. Never called in
    offline mode.
    """
    try:
        get_session().head(hub_endpoint(), timeout=timeout_seconds)
    except Exception:  # noqa: BLE001 - any transport, proxy or TLS failure means "not reachable"
        return False
    return True


def require_hub(kind: str, name: str, suggestion: str) -> None:
    """Raise a one-line `CnnvitError` unless the hub can be reached (or offline mode is on)."""
    if offline_mode():
        return
    if not hub_reachable():
        raise CnnvitError(
            f"cannot reach the Hugging Face hub at {hub_endpoint()} to download {kind} "
            f"'{name}' (no network?): {suggestion}, or set HF_HUB_OFFLINE=1 to use a copy "
            "already in your cache"
        )
