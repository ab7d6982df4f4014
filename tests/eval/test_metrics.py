import torch
import torch.nn.functional as F

from clap_train.eval.metrics import EvalConfig, source_metrics
from clap_train.eval.retrieval import retrieval_metrics
from clap_train.eval.zeroshot import labels_from_tags, zeroshot_metrics
from clap_train.prompts import DEFAULT_TEMPLATES


def test_one_metric_path_is_retrieval_plus_zeroshot_plus_counts():
    g = torch.Generator().manual_seed(0)
    audio = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    text = F.normalize(torch.randn(9, 8, generator=g), dim=-1)
    owner = torch.tensor([0, 0, 1, 2, 3, 3, 4, 5, 5])
    protos = F.normalize(torch.randn(3, 8, generator=g), dim=-1)
    tags = [["a"], ["b"], ["c"], ["a", "b"], [], ["C"]]
    m, labels = source_metrics(audio, text, owner, tags, ["a", "b", "c"], protos)
    want = {
        **retrieval_metrics(audio, text, owner),
        **zeroshot_metrics(audio, protos, labels_from_tags(tags, ["a", "b", "c"])),
    }
    assert {k: m[k] for k in want} == want and m["n_clips"] == 6 and m["n_captions"] == 9
    assert labels.tolist() == [0, 1, 2, -1, -1, 2]
    only_classes, _ = source_metrics(audio, None, None, tags, ["a", "b", "c"], protos)  # a zero-shot protocol
    assert "t2a_R@1" not in only_classes and only_classes["zeroshot_top1"] == m["zeroshot_top1"]


def test_eval_templates_default_to_the_one_prompt():
    assert EvalConfig().templates == list(DEFAULT_TEMPLATES) == EvalConfig(templates=None).templates
