"""README's "Feeding a fast GPU" recipe as written: LAION-layout shards converted to 16-bit WAV with
`clap-train convert-shards`, then `data=laion` with one source pointed at the converted folder trains."""

import json
import shutil

import pytest

from clap_train.cli import main
from tests.e2e.conftest import train_py


@pytest.mark.slow
def test_laion_source_from_converted_pcm16_shards_trains(tmp_path, data_root):
    root = tmp_path / "LAION-Audio-630K"
    shutil.copytree(f"{data_root}/sentences", root / "sentences")
    fast = tmp_path / "fast" / "sentences_pcm16" / "train"
    assert (
        main(["convert-shards", str(root / "sentences" / "train"), str(fast), "--codec", "pcm16", "--workers", "2"])
        == 0
    )
    shutil.rmtree(root / "sentences" / "train")  # only the converted copy is left to train from
    p = train_py(
        tmp_path,
        [
            "data=laion",
            f"data.laion.root={root}",
            "data.laion.train=[sentences]",
            "data.laion.val=[sentences]",
            "data.laion.test=[sentences]",
            f"+data.sources.sentences.shards={fast}",
            "synthetic.enabled=false",
        ],
        ranks=1,
    )
    (run,) = [d for d in (tmp_path / "runs").iterdir()]
    res = json.load(open(run / "results.json"))
    assert res["global_step"] == 4 and "test/sentences/t2a_R@1" in res["test"], p.stdout[-2000:]
