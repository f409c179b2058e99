"""The notebooks' environment variables, cleared for each test: the ``clean_env`` fixture of the notebook
helper tests. Not a test module: imported by tests/test_notebook_settings.py and test_notebook_tutorial.py
(a fixture imported into a test module is used as if defined there)."""

from __future__ import annotations

import pytest

#: Every variable the notebook settings read (medsam_lite.app.config).
ENV = ("MEDSAM_LITE_DATA", "MEDSAM_LITE_MODALITY", "MEDSAM_LITE_TEST_CASES", "MEDSAM_LITE_LABELS",
       "MEDSAM_LITE_WORK", "MEDSAM_LITE_QUICK", "MEDSAM_LITE_THREADS", "MEDSAM_LITE_SETTINGS")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No notebook variable set (the test sets what it needs); torch's thread count restored after."""
    import torch

    for key in ENV:
        monkeypatch.delenv(key, raising=False)
    threads = torch.get_num_threads()
    yield monkeypatch
    torch.set_num_threads(threads)
