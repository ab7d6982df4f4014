from clap_train.data.audio_files import AudioItem
from clap_train.eval.zeroshot import labels_from_tags
from clap_train.prompts import DEFAULT_TEMPLATES, class_key, class_phrase
from clap_train.tools.zeroshot import label_indices


def test_spellings_of_one_class_match():
    assert class_phrase("dog_bark") == class_phrase("dog-bark") == "dog bark"
    assert class_key("Dog_Bark") == class_key("dog bark")
    assert DEFAULT_TEMPLATES[0].format("dog bark") == "This is a sound of dog bark."


def test_one_label_rule_for_shards_and_files():
    classes = ["dog_bark", "siren"]
    tags = [["Dog bark"], ["siren", "dog-bark"], ["rain"], []]
    want = [0, -1, -1, -1]  # several classes named: unlabelled, not the first one
    assert labels_from_tags(tags, classes).tolist() == want
    items = [AudioItem(f"{i}.wav", f"{i}.wav", labels=t) for i, t in enumerate(tags)]
    labels, unknown = label_indices(items, classes)
    assert labels.tolist() == want and unknown == ["rain"]
