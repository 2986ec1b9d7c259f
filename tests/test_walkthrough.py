"""walkthrough.ipynb runs top to bottom on a CPU, so it cannot fall out of step with the code, and each of its
cells shows what its text says it shows."""

import html
import re
import shutil

import pytest

from conftest import REPO_ROOT

nbformat = pytest.importorskip("nbformat", reason="the notebook test needs nbformat (requirements-dev.txt)")
nbclient = pytest.importorskip("nbclient", reason="the notebook test needs nbclient (requirements-dev.txt)")

NUMBER = r"-?\d+(?:\.\d*)?"
POINTER = re.compile(r"edit `mine/(\w+)\.py` and run `python3 learn\.py check (\w+)`")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """(repo, notebook): the notebook run once in a copy of the repository, so its data/ and
    out-walkthrough/ land in a temporary folder."""
    repo = tmp_path_factory.mktemp("walkthrough") / "repo"
    shutil.copytree(REPO_ROOT, repo, ignore=shutil.ignore_patterns(".git", "data", "out*", "tests", "docs",
                                                                   "__pycache__", "*.pt"))
    notebook = nbformat.read(repo / "walkthrough.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(repo)}}).execute()
    return repo, notebook


def printed(notebook, snippet, kind="text"):
    """What the one code cell whose source holds `snippet` printed (kind="text") or showed as HTML."""
    cells = [cell for cell in notebook.cells if cell.cell_type == "code" and snippet in cell.source]
    assert len(cells) == 1, f"{len(cells)} code cells hold {snippet!r}"
    outputs = cells[0].outputs
    if kind == "text":
        return "".join(o.get("text", "") for o in outputs)
    return "".join(o.get("data", {}).get("text/html", "") for o in outputs)


def numbers(text):
    return [float(n) for n in re.findall(NUMBER, text)]


def test_the_notebook_runs_top_to_bottom_and_draws_every_picture(executed):
    repo, notebook = executed
    text = "\n".join(printed(notebook, cell.source) for cell in notebook.cells if cell.cell_type == "code")
    assert "h.0.attn.softmax" in text and "(2, 4, 16, 16)" in text  # the shape trace of one batch
    assert "vocabulary of 65" in text
    images = sum(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
                 for cell in notebook.cells for o in cell.get("outputs", []))
    # the encoding, the masks, the untrained head, the loss curve, the embedding, two trained heads (one figure)
    assert images == 6
    log = (repo / "out-walkthrough" / "log.jsonl").read_text().splitlines()
    assert len(log) == 4 and (repo / "out-walkthrough" / "samples.txt").read_text().count("=== iter") == 4


def test_the_training_cell_keeps_a_few_lines_not_every_redraw_of_a_progress_bar(executed):
    """A saved notebook keeps what a cell printed: a progress bar's redraws (once ~1,300 fragments with
    terminal escape codes) would be most of the file. The evaluations and the summary say the progress."""
    cell = next(c for c in executed[1].cells if c.cell_type == "code" and "train.main(" in c.source)
    text = "".join(o.get("text", "") for o in cell.outputs)
    assert "\x1b[" not in text and "\r" not in text, text[:500]
    assert len(cell.outputs) <= 20 and len(text) < 4000, text  # four evaluations and their 200-character samples
    assert [int(i) for i in re.findall(r"^iter (\d+): train loss", text, re.M)] == [0, 100, 200, 300]
    assert re.search(r"^done: iter 300, best val loss", text, re.M), text


def test_the_two_os_of_romeo_get_the_same_embedding_row(executed):
    rows = re.findall(r"^'(\w)' = id +\d+ -> row +\d+ = (\[[^\]]*\])", printed(executed[1], 'zip("ROMEO"'), re.M)
    assert [char for char, _ in rows] == list("ROMEO")
    row = dict(rows)
    assert rows[1][1] == rows[4][1] and row["R"] != row["O"] != row["M"]


def test_the_hand_made_query_takes_the_values_of_the_keys_it_matches(executed):
    out = printed(executed[1], "steps = attend(q, k, v)\n")
    weights = numbers(re.search(r"^weight \(softmax\)(.*)$", out, re.M).group(1))  # keys a ␣ b a y
    assert len(weights) == 5 and sum(weights) == pytest.approx(1, abs=0.03)
    assert weights[0] + weights[3] > 0.9 and weights[2] < 0.05  # the two a's, not the b
    received = dict(re.findall(rf"(\S) ({NUMBER})", out.split("output y = weights @ v:")[1]))
    assert float(received["a"]) > 0.9  # the output is almost all 'a'


def test_the_score_variants_give_different_scores_on_the_same_q_and_k(executed):
    out = printed(executed[1], "attend(q, k, v, attn_score)")
    rows = {name: numbers(values) for name, values in re.findall(r"^(\w+)((?: +-?\d+\.\d+){10})$", out, re.M)}
    assert sorted(rows) == sorted(["dot", "dot_then_square", "square_then_dot", "neg_dot"])
    scores = {name: tuple(values[:5]) for name, values in rows.items()}  # keys a ␣ b a y
    weights = {name: values[5:] for name, values in rows.items()}
    assert len(set(scores.values())) == 4 and all(any(s) for s in scores.values())  # all different, none all zero
    assert weights["dot"][0] > 0.4 and weights["dot"][2] < 0.05  # dot: the a's, not the b
    assert weights["dot_then_square"][2] == pytest.approx(weights["dot_then_square"][0], abs=0.01)  # the b as an a
    assert scores["dot"][4] == 0 and scores["square_then_dot"][4] > 1  # per channel, the y's +1 and -1 do not cancel
    assert weights["neg_dot"][2] > 0.4 and weights["neg_dot"][0] < 0.05  # negated: the b, not the a's


def test_dropout_zeroes_and_rescales_in_training_only(executed):
    out = printed(executed[1], "drop = dropped.transformer.drop")
    train_1, train_2, evaluation = (numbers(part) for part in re.split(r"(?:train\(\), call \d|eval\(\)):\n", out)[1:])
    for dropped in (train_1, train_2):
        assert len(dropped) == 16 and set(dropped) == {0.0, 2.0}
    assert train_1 != train_2 and evaluation == [1.0] * 16


def test_the_samples_before_and_after_training_are_shown_side_by_side(executed):
    repo, notebook = executed
    samples = re.split(r"^=== iter \d+, val loss \S+ ===\n", (repo / "out-walkthrough" / "samples.txt").read_text(),
                       flags=re.M)[1:]
    before, after = samples[0].strip("\n"), samples[-1].strip("\n")
    assert before != after and before.startswith("ROMEO:") and after.startswith("ROMEO:")
    page = printed(notebook, "EvalSamples.HEADER", kind="html")
    assert page.index("iteration 0") < page.index(html.escape(before)) < page.index("iteration 300")
    assert page.index("iteration 300") < page.index(html.escape(after))


def test_the_trained_embedding_puts_alike_characters_together(executed):
    out = printed(executed[1], "torch.linalg.svd")
    nearest = dict(re.findall(r"^nearest to '(.)': (.*)$", out, re.M))
    assert sum(c in "aeiouAEIOU" for c in nearest["a"].split()) >= 3
    assert sum(c in ".,;:!?'-" for c in nearest["."].split()) >= 3


def test_two_trained_heads_look_at_different_things(executed):
    notebook = executed[1]
    picked = re.findall(rf"-> layer (\d) head (\d): ({NUMBER}) \(uniform: ({NUMBER})\)",
                        printed(notebook, "def mean_weight"))
    assert len(picked) == 2 and picked[0][:2] != picked[1][:2]
    for *_, share, uniform in picked:
        assert float(share) > 2 * float(uniform)  # far from an untrained head's even spread
    scores = printed(notebook, 'find_query(trained.tokenizer, pizza_ids, "came")')
    assert f"layer {picked[1][0]} head {picked[1][1]}, query 'e'" in scores  # the e of "came", in the second head
    keys = re.search(r"^key (.*)$", scores, re.M).group(1).split()
    weights = numbers(re.search(r"^weight (.*)$", scores, re.M).group(1))
    assert len(keys) == len(weights) == 8 and 0 < sum(weights) <= 1.001
    assert keys[weights.index(max(weights))] == "c"  # the letter that starts the word


def test_the_explore_page_is_inline(executed):
    page = printed(executed[1], "page_html(", kind="html")
    assert page.startswith("<div><iframe srcdoc=") and 'sandbox="allow-scripts"' in page
    assert "The pizza came out of the oven" in page and "The oven came out of the pizza" in page


def test_the_residual_stream_keeps_the_embedding_as_it_grows(executed):
    out = printed(executed[1], 'pizza_steps["tok_emb"]')
    rows = re.findall(rf"^(embedding|h\.\d \+ (?:attn|mlp)) +({NUMBER}) +(?:({NUMBER}) +)?({NUMBER})$", out, re.M)
    assert [r[0] for r in rows] == ["embedding"] + [f"h.{i} + {s}" for i in range(3) for s in ("attn", "mlp")]
    assert float(rows[-1][1]) > float(rows[0][1])  # |x| grows as the sublayers add to it
    assert float(rows[-1][3]) > 0.25  # and still points partly like the embedding


def test_each_exercise_pointer_names_one_exercise():
    notebook = nbformat.read(REPO_ROOT / "walkthrough.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells)  # stored without outputs
    text = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    pointers = POINTER.findall(text)
    assert len(pointers) >= 8 and all(edit == check for edit, check in pointers)
    exercises = REPO_ROOT / "exercises"
    if not exercises.is_dir():
        pytest.skip("exercises/ (learn.py) is not in this checkout: the names are checked where it is")
    assert [name for name, _ in pointers if not (exercises / f"{name}.py").is_file()] == []
