"""The README's settings tables name every setting the scripts accept, with its real default."""

import dataclasses
import json
import re

import pytest

from conftest import REPO_ROOT
from model import GPTConfig
import sample
import train


def readme_settings():
    """{key: default column} from every `| key, key | default | meaning |` row of the README and of the
    pages under docs/ it links to (a feature's settings may be on its own page)."""
    rows = {}
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    for line in (line for page in pages for line in page.read_text().splitlines()):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"[a-z_0-9]+(, [a-z_0-9]+)*", cells[0]):
            keys, defaults = cells[0].split(", "), cells[1].split(", ")
            for i, key in enumerate(keys):
                rows[key] = defaults[i] if len(defaults) == len(keys) else cells[1]
    return rows


def documents(documented, default):
    """Whether the README's default column states `default` (or describes it in words)."""
    if isinstance(default, bool):
        return documented == str(default)
    if isinstance(default, (int, float)):
        try:
            return float(documented) == default
        except ValueError:
            return not documented[:1].isdigit()  # in words: "from the dataset"
    # a string as it reads, or quoted as a literal ("\n"); an empty default is described in words
    return documented.strip("`") in (default, json.dumps(default)) or not default


@pytest.mark.parametrize("config", [GPTConfig, train.TrainConfig, sample.SampleConfig])
def test_every_setting_is_in_the_readme_with_its_default(config):
    rows = readme_settings()
    for field in dataclasses.fields(config):
        assert field.name in rows, f"the settings tables of README.md and docs/*.md lack {field.name}"
        assert documents(rows[field.name], field.default), (field.name, rows[field.name], field.default)
