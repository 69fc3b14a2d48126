"""Reaching the Hugging Face hub, or saying quickly and plainly that it cannot be reached.

`from_pretrained` and `load_dataset` retry for half a minute when there is no network. Before
either goes to the hub we open one TCP connection to the hub's host with a short timeout, so an
offline user gets a one-line answer in seconds. `HF_HUB_OFFLINE=1` skips the probe: the libraries
then read their local cache, which is how a user works offline with models they already have.
"""

from __future__ import annotations

import os
import re
import socket
from urllib.parse import urlparse

from .errors import CnnvitError

# owner/name or name: what the hub accepts as a repository id.
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[\w.-]{1,96})?$")


def looks_like_repo_id(name: str) -> bool:
    """True if `name` has the form of a hub repository id (no path-like prefix)."""
    return bool(_REPO_ID.match(name)) and not name.startswith((".", "~"))


def offline_mode() -> bool:
    """True when the user asked the Hugging Face libraries to stay offline."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout_seconds: float = 3.0) -> bool:
    """One TCP connection to the hub endpoint; False on any failure within the timeout."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout_seconds):
            return True
    except OSError:
        return False


def require_hub(kind: str, name: str, suggestion: str) -> None:
    """Raise a one-line `CnnvitError` unless the hub can be reached (or offline mode is on)."""
    if offline_mode():
        return
    if not hub_reachable():
        raise CnnvitError(
            f"cannot reach the Hugging Face hub to download {kind} '{name}' (no network?): "
            f"{suggestion}, or set HF_HUB_OFFLINE=1 to use a copy already in your cache"
        )
