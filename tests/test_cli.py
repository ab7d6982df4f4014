import json

from clap_train.cli import main


def test_check_data_ok_and_cannot_train(synth_root, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["check-data", f"{synth_root}/sentences/valid", "--json", str(out)]) == 0
    rep = json.load(open(out))
    assert rep["good"] == 24 and rep["sample_rates"] == {"32000": 24} and rep["json_fields"]["text"] == 24
    assert "OK" in capsys.readouterr().out
    # tag-only data without templates: no captions, cannot train
    assert main(["check-data", f"{synth_root}/tags/valid"]) == 1
    assert "CANNOT TRAIN" in capsys.readouterr().out
    assert main(["check-data", f"{synth_root}/tags/valid", "--tag-template", "{}"]) == 0
    assert main(["check-data", str(tmp_path / "nothing")]) == 1
