"""Shared test set-up: few threads (2-core CI), fixed seeds, the shared real data folder."""

from __future__ import annotations

import http.server
import os
import threading
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
# Tests never touch the network: weights missing from a test's own cache are refused, not downloaded
# (the download tests serve files from 127.0.0.1 and turn this off).
os.environ["DETSEG_OFFLINE"] = "1"
# --amp auto (the default) stays off on CPU whatever CPU runs the suite, so that its figures do not depend
# on the machine (tests/engine/test_amp.py says which CPU to pretend).
os.environ["DETSEG_CPU_BF16"] = "0"

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass

SHARED_DATA = Path(
    os.environ.get("DETSEG_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public data in ../shared/data beside the repository (or $DETSEG_SHARED_DATA)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA}; set DETSEG_SHARED_DATA to its folder")
    return SHARED_DATA


@pytest.fixture
def local_server():
    """``start(handler)``: an HTTP server on 127.0.0.1 (a thread), its URL as ``.base``; stopped after the
    test. The only network tests use (downloads of weights the test wrote itself)."""
    servers = []

    def start(handler) -> http.server.ThreadingHTTPServer:
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return httpd

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()
