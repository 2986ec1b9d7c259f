"""The documentation stays true: docs/settings.md names every setting with its real default, every
relative link in README.md and docs/ reaches a file (and a heading), the commands name scripts and
configs that exist, and README's test command is the one CI runs."""

import dataclasses
import json
import re

import pytest

from conftest import REPO_ROOT
from model import GPTConfig
from transformer import TransformerConfig
import sample
import train

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
CONFIGS = [GPTConfig, train.TrainConfig, sample.SampleConfig]


def settings_rows():
    """{key: [default column, ...]} from every `| key, key | default | meaning |` row of docs/settings.md (a key
    two scripts share, with two defaults, has a row in each one's table)."""
    rows = {}
    for line in (REPO_ROOT / "docs" / "settings.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] != "key" and re.fullmatch(r"[a-z_0-9]+(, [a-z_0-9]+)*", cells[0]):
            keys, defaults = cells[0].split(", "), cells[1].split(", ")
            for i, key in enumerate(keys):
                rows.setdefault(key, []).append(defaults[i] if len(defaults) == len(keys) else cells[1])
    return rows


def documents(documented, default):
    """Whether the default column states `default` (or describes it in words)."""
    if isinstance(default, bool):
        return documented == str(default)
    if isinstance(default, (int, float)):
        try:
            return float(documented) == default
        except ValueError:
            return not documented[:1].isdigit()  # in words: "from the dataset"
    # a string as it reads, or quoted as a literal ("\n"); an empty default is described in words
    return documented.strip("`") in (default, json.dumps(default)) or not default


@pytest.mark.parametrize("config", CONFIGS)
def test_every_setting_is_in_the_settings_page_with_its_default(config):
    rows = settings_rows()
    for field in dataclasses.fields(config):
        assert field.name in rows, f"docs/settings.md's tables lack {field.name}"
        assert any(documents(row, field.default) for row in rows[field.name]), (field.name, rows[field.name],
                                                                                field.default)


def test_the_settings_page_names_the_encoder_decoders_own_settings():
    rows, shared = settings_rows(), {field.name for field in dataclasses.fields(GPTConfig)}
    for field in dataclasses.fields(TransformerConfig):
        if field.name not in shared:
            assert field.name in rows, f"docs/settings.md's tables lack {field.name}"
            assert any(documents(row, field.default) for row in rows[field.name]), (field.name, rows[field.name],
                                                                                    field.default)


def test_the_settings_page_names_no_setting_that_does_not_exist():
    known = {field.name for config in [*CONFIGS, TransformerConfig] for field in dataclasses.fields(config)}
    assert set(settings_rows()) - known == set()


# ---------------------------------------------------------------------------------------------
# links, headings and commands


def prose(text):
    """The text without fenced code blocks: what GitHub renders as links and headings."""
    return re.sub(r"^ {0,3}```.*?^ {0,3}```[^\n]*$", "", text, flags=re.M | re.S)


def code_lines(text):
    """Every line inside the fenced code blocks."""
    blocks = re.findall(r"^ {0,3}```[^\n]*\n(.*?)^ {0,3}```", text, flags=re.M | re.S)
    return [line for block in blocks for line in block.splitlines()]


def anchor(heading):
    """GitHub's anchor for a heading: its text lower-cased, punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = re.sub(r"[^\w\- ]", "", text.replace("`", "").lower())
    return text.replace(" ", "-")


def anchors(path):
    """Every heading's anchor in a Markdown file (a repeated heading gets -1, -2, ... as on GitHub)."""
    seen, found = {}, set()
    for line in prose(path.read_text()).splitlines():
        match = re.match(r" {0,3}#{1,6}\s+(.+?)\s*#*\s*$", line)
        if match:
            slug = anchor(match.group(1))
            found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
            seen[slug] = seen.get(slug, 0) + 1
    return found


def relative_links(path):
    """(target, fragment) of every relative link and image in a Markdown file, outside code."""
    text = re.sub(r"`[^`\n]*`", "", prose(path.read_text()))
    for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text):
        if not re.match(r"[a-z]+:", target):  # https:, mailto:
            file, _, fragment = target.partition("#")
            yield file, fragment


def test_anchor_follows_github():
    # each of these links worked on GitHub before the docs were split
    assert anchor("Model (`GPTConfig` in model.py; stored in the checkpoint)") == \
        "model-gptconfig-in-modelpy-stored-in-the-checkpoint"
    assert anchor("Run it in llama.cpp / Ollama") == "run-it-in-llamacpp--ollama"
    assert anchor('What does "it" attend to?') == "what-does-it-attend-to"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_reaches_a_file_and_a_heading(doc):
    links = list(relative_links(doc))
    assert links, f"{doc.name} has no relative links: the link finder is broken"
    for file, fragment in links:
        target = (doc.parent / file).resolve() if file else doc
        assert target.exists(), f"{doc.name} links to {file}, which does not exist"
        if fragment and target.suffix == ".md":
            assert fragment in anchors(target), f"{doc.name} links to {file}#{fragment}: no such heading"


def test_every_docs_page_links_back_and_is_linked_from_the_readme():
    readme_targets = {(REPO_ROOT / file).resolve() for file, _ in relative_links(REPO_ROOT / "README.md")}
    for page in DOCS[1:]:
        assert (REPO_ROOT / "README.md") in {(page.parent / f).resolve() for f, _ in relative_links(page)}, \
            f"{page.name} does not link back to README.md"
        assert page.resolve() in readme_targets, f"README.md does not link to docs/{page.name}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_commands_name_scripts_and_configs_that_exist(doc):
    text = doc.read_text()
    scripts = set(re.findall(r"\bpython3? ([a-z_]+\.py)\b", text))
    configs = set(re.findall(r"(?<![\w/.])(config/[a-z_0-9]+\.py)\b", text))
    for name in scripts | configs:
        assert (REPO_ROOT / name).is_file(), f"{doc.name} names {name}, which does not exist"


def test_the_docs_state_no_test_count_that_goes_stale():
    """How many tests pass, skip or fail changes with every commit: pytest's last line says it, prose would
    soon be wrong (README once said 957 tests when there were 961)."""
    stale = re.compile(r"\b\d[\d,]* (?:tests|passed|skipped|wrong solutions)\b")
    for doc in DOCS:
        assert not stale.findall(doc.read_text()), f"{doc.name} states a count that goes stale"
    assert stale.search("957 tests, 947 passed")


def test_the_readme_test_command_is_the_one_ci_runs():
    ci = [line for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
          if "pytest" in line and not line.lstrip().startswith("#")]
    assert len(ci) == 1, ci
    readme = [line for line in code_lines((REPO_ROOT / "README.md").read_text()) if "-m pytest" in line]
    assert readme and set(readme) == set(ci), (readme, ci)
