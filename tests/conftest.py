import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AR2DIFF_SHARED_DATA", ROOT.parent / "shared" / "data"))

# tiktoken's own offline cache (the GPT-2 BPE files) when the local data folder is present
if "TIKTOKEN_CACHE_DIR" not in os.environ and (SHARED_DATA / "tiktoken_cache").is_dir():
    os.environ["TIKTOKEN_CACHE_DIR"] = str(SHARED_DATA / "tiktoken_cache")


@pytest.fixture
def shared_data():
    """The local copies of the real datasets (../shared/data, or $AR2DIFF_SHARED_DATA)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real-data test: {SHARED_DATA} is absent (set AR2DIFF_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture
def root():
    return ROOT
