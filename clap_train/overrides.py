"""Command-line overrides as a user writes them, made into what Hydra accepts.

- `data.sources`, `data.val_sources` and `data.test_sources` are the user's own mappings: with `data=laion`
  they start empty (the layout names the sources), so Hydra would refuse `data.sources.clotho=null` or
  `data.sources.audioset.weight=0.2` as "not in struct" and ask for `+`, while `+` fails where the entry
  exists. `++` (add or override) is right in both cases.
- A shard brace pattern (`/data/train/{000000..000063}.tar`, `{a,b}`) is not valid in Hydra's override
  grammar (`{` opens a dict there); quoted once more, it reaches us as the string the user typed.
"""

import re

SOURCE_PREFIXES = ("data.sources.", "data.val_sources.", "data.test_sources.")
# a brace range or alternation, not a Hydra dict (those have `key:`)
BRACE_PATTERN = re.compile(r"\{[^{}:'\"]*(?:\.\.|,)[^{}:'\"]*\}")


def hydra_overrides(argv: list[str]) -> list[str]:
    """argv with source overrides given `++` and brace-pattern values quoted; everything else untouched."""
    out = []
    for a in argv:
        key, eq, value = a.partition("=")
        if eq and not key.startswith("-"):
            if BRACE_PATTERN.search(value) and not value.startswith(("'", '"')):
                a = f"{key}='{value}'"
            if key.startswith(SOURCE_PREFIXES):
                a = f"++{a}"
        out.append(a)
    return out
