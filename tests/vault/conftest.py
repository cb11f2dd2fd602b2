"""Fixtures for the vault: a key directory made as `llero init` makes it, and its keyring."""

from pathlib import Path

import pytest

from llero.config.keyfiles import create_key_files, make_private_dir
from llero.vault.keyring import Keyring, load_keyring

PLANTED = "sk-live-PLANTED-7d41c0a9e35b42f8b6d1e0c2a9f83b57"


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "keys"
    make_private_dir(path.parent)
    create_key_files(path)
    return path


@pytest.fixture
def keyring(keys_dir: Path) -> Keyring:
    return load_keyring(keys_dir)
