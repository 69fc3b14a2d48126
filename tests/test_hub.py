"""The hub helpers: huggingface_hub's repo-id rules, offline mode without any network attempt,
and a reachability probe that goes through mirrors and proxies like every download does.

A small HTTP server on 127.0.0.1 plays the mirror or the proxy; the probe runs in a fresh
interpreter because huggingface_hub reads the environment (offline flags, proxies) when it starts.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from cnnvit import hub
from cnnvit.errors import CnnvitError


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("google/vit-base-patch16-224", True),
        ("uoft-cs/cifar10", True),
        ("mnist", True),
        ("my--model", False),  # the hub forbids "--" and ".."
        ("owner/a..b", False),
        ("a/b/c", False),
        ("./models/vit", False),
        ("model.git", False),
        ("-leading-dash", False),
        ("x" * 97, False),
        ("no such set!", False),
    ],
)
def test_repo_ids_follow_the_hub_rules(name: str, valid: bool):
    assert hub.looks_like_repo_id(name) is valid


def test_offline_mode_makes_no_network_attempt(monkeypatch: pytest.MonkeyPatch):
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise AssertionError("network attempted in offline mode")

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "get_session", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert hub.offline_mode()
    hub.require_hub("model", "google/vit-base-patch16-224", "use a preset")  # no error
    assert attempts == []


def _in_fresh_python(code: str, **env: str) -> str:
    offline = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    clean = {k: v for k, v in os.environ.items()
             if not k.upper().endswith("_PROXY") and k not in offline}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return result.stdout.strip()


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_both_offline_variables_are_honoured(variable: str):
    code = "from cnnvit import hub; print(hub.offline_mode())"
    assert _in_fresh_python(code, **{variable: "1"}) == "True"
    assert _in_fresh_python(code) == "False"


@pytest.fixture()
def local_server() -> Iterator[tuple[int, list[str]]]:
    """An HTTP server on a free loopback port that answers 200 and records each request line."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802 - the http.server API
            seen.append(f"{self.command} {self.path}")
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


PROBE = "from cnnvit import hub; print(hub.hub_reachable(timeout_seconds=5))"


def test_probe_goes_to_the_mirror_in_hf_endpoint(local_server: tuple[int, list[str]]):
    port, seen = local_server
    assert _in_fresh_python(PROBE, HF_ENDPOINT=f"http://127.0.0.1:{port}") == "True"
    assert seen and seen[0].startswith("HEAD /")


def test_probe_goes_through_the_proxy(local_server: tuple[int, list[str]]):
    port, seen = local_server
    # hub.invalid never resolves: only a proxy that receives the request can answer it.
    proxy = f"http://127.0.0.1:{port}"
    reached = _in_fresh_python(
        PROBE, HF_ENDPOINT="http://hub.invalid", HTTP_PROXY=proxy, http_proxy=proxy
    )
    assert reached == "True"
    assert seen and seen[0] == "HEAD http://hub.invalid/"


def test_unreachable_hub_is_one_line_naming_the_endpoint(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed port: "no network"
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    with pytest.raises(CnnvitError) as caught:
        hub.require_hub("model", "google/vit-base-patch16-224", "use a preset")
    message = str(caught.value)
    assert "\n" not in message
    assert "http://127.0.0.1:9" in message and "HF_HUB_OFFLINE=1" in message
