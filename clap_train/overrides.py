"""Command-line overrides as a user writes them, made into what Hydra accepts.

`data.sources`, `data.val_sources` and `data.test_sources` are the user's own mappings: with `data=laion`
they start empty (the layout names the sources), so Hydra would refuse `data.sources.clotho=null` or
`data.sources.audioset.weight=0.2` as "not in struct" and ask for `+`, while `+` fails where the entry
exists. `++` (add or override) is right in both cases, so train.py passes source overrides that way."""

SOURCE_PREFIXES = ("data.sources.", "data.val_sources.", "data.test_sources.")


def open_source_overrides(argv: list[str]) -> list[str]:
    """argv with each `data.<sources>.<name>...=value` given Hydra's `++`; everything else untouched."""
    return [f"++{a}" if a.startswith(SOURCE_PREFIXES) and "=" in a else a for a in argv]
