import pytest

from tests.data.messy import write_messy_folder


@pytest.fixture(scope="session")
def messy_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("messy_tools")
    return str(root / "in"), write_messy_folder(str(root / "in"))
