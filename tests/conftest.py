import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # so tests import the repository's modules from anywhere


@pytest.fixture
def shakespeare_path():
    path = REPO_ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
    if not path.is_file():
        pytest.skip(f"Tiny Shakespeare not found at {path}")
    return path
