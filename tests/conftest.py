"""Test-wide set-up: offline hubs, no network beyond loopback, deterministic seeds."""

from __future__ import annotations

import os
import socket
import sys
import tempfile

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
}.items():
    os.environ.setdefault(_key, _value)
# torch.hub downloads (lpips backbones, RAFT) must never find a cache populated by a developer's machine.
os.environ.setdefault("TORCH_HOME", tempfile.mkdtemp(prefix="tcve-torch-home-"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "", None}


def _network_guard(event: str, args: tuple) -> None:
    # Any lookup of a non-local host means some code path tried to download: fail loudly instead of hanging.
    if event == "socket.getaddrinfo":
        host = args[0]
        if isinstance(host, bytes):
            host = host.decode()
        if host not in _LOOPBACK and not str(host).startswith("127."):
            raise OSError(f"tests are offline: blocked lookup of {host!r}")


sys.addaudithook(_network_guard)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line("markers", "gpu: needs CUDA (skipped without it)")
    config.addinivalue_line("markers", "browser: drives a headless Chromium")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: on a shared 2-core machine two threads run small convolutions several times
    slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fixtures_dir() -> str:
    return os.path.join(os.path.dirname(__file__), "fixtures")
