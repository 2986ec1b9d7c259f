"""visualize.py explore: one HTML page to explore a model's attention, offline.

First the page's data, read back without a browser (one self-contained file; the stored weights are the
model's within a byte; the next tokens are the model's). Then headless Chromium (Debian's `chromium`,
driven by Playwright) opens the file as a user would: no console error, no network request, and what it
shows for the token "it" is what the model computes, layer by layer and head by head, in both panels.
Without Chromium or Playwright the browser tests are skipped with the reason (REQUIRE_BROWSER=1, as CI
sets, makes that a failure instead).

EXPLORE_SCREENSHOTS=out-lab (a trained run) makes the screenshot test write docs/explore_head.png and
docs/explore_model.png from that run, as docs/explore.md shows them.
"""

import base64
import html
import json
import math
import os
import re
import shutil
import zlib
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT, main_error_line, make_model, png_size
from gptkit.attention_maps import attention_maps, word_weights
from gptkit.checkpoint import load_checkpoint, load_trained, model_from_checkpoint, save_checkpoint
from gptkit.errors import UserError
from gptkit.explore import LEVELS, inline, page_html, panel
from gptkit.tokenizer import CharTokenizer, find_query, load_tokenizer
from model import GPT, GPTConfig
from transformer import Transformer, TransformerConfig, translate
import visualize

PIZZA, SWAPPED = visualize.PIZZA, visualize.PIZZA_SWAPPED
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]  # Playwright adds --headless and a fresh profile


def peaked_checkpoint(out_dir, **overrides):
    """A char-level checkpoint whose heads attend sharply, each in its own way (large random q, k weights),
    so that a page showing the wrong layer or head could not pass for the right one."""
    tokenizer = CharTokenizer.from_text(PIZZA + SWAPPED + "\nROMEO:")
    model = make_model(**{"vocab_size": tokenizer.vocab_size, "block_size": 64, "n_embd": 16, **overrides})
    with torch.no_grad():
        for block in model.transformer.h:
            block.attn.c_attn.weight.normal_(std=0.8, generator=torch.Generator().manual_seed(block.attn.layer))
    save_checkpoint(Path(out_dir) / "best.pt", model, iter_num=7, meta=tokenizer.meta())
    return tokenizer, model_from_checkpoint(load_checkpoint(Path(out_dir) / "best.pt")).eval()


def page_data(page):
    """The JSON the page carries (the text of its script "explore-data")."""
    found = re.search(r'<script id="explore-data" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(found.group(1))


def stored_maps(p, view="self"):
    """A panel's weights of one attention read back as gptkit/explore.py describes them: (n_layer, nh, T, S), NaN
    where hidden; T and S the lengths of the token lists its queries and keys name."""
    n_layer, n_head, stored = p["shape"]["n_layer"], p["shape"]["n_head"], p["views"][view]
    T, S = len(p[stored["queries"]]), len(p[stored["keys"]])
    levels = torch.frombuffer(bytearray(zlib.decompress(base64.b64decode(stored["weights"]))), dtype=torch.uint8)
    per_head = levels.view(n_layer, n_head, -1).float()
    maps, start = torch.full((n_layer, n_head, T, S), float("nan")), 0
    for t, (first, last) in enumerate(stored["ranges"]):
        n = last - first + 1
        maps[:, :, t, first:last + 1] = (per_head[:, :, start:start + n] / LEVELS) ** 2
        start += n
    assert start == per_head.size(-1) and len(stored["ranges"]) == T  # every byte read, a range per query
    return maps


def storage_error(w):
    """How far a stored weight may be from w: round(255 sqrt(w)) is off by at most half a level."""
    return w.sqrt() / LEVELS + 1 / (4 * LEVELS ** 2)


def assert_same_weights(shown, expected):
    """shown: a weight per key (None where hidden); expected: the model's (S,), NaN where hidden."""
    assert [w is None for w in shown] == expected.isnan().tolist()
    allowed = ~expected.isnan()
    got = torch.tensor([w for w in shown if w is not None])
    assert ((got - expected[allowed]).abs() <= storage_error(expected[allowed])).all(), (got, expected[allowed])


def write_explore(out_dir, *args):
    visualize.main(["explore", f"--out_dir={out_dir}", *args])
    return (Path(out_dir) / "attention.html").read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# the file and its data, without a browser


def assert_loads_nothing(page):
    # no URL to fetch anywhere: the only one is the SVG namespace, a name rather than an address
    assert set(re.findall(r"https?://[^\s\"'<>)]+", page)) == {"http://www.w3.org/2000/svg"}
    attributes = re.findall(r"\b(?:src|href|srcset|action)\s*=", page, re.I)
    assert attributes == [] and "<link" not in page and "@import" not in page and "url(" not in page
    assert page.count("<script") == 2 and "<script src" not in page  # the data, the program: both inline


def test_the_page_is_one_file_that_loads_nothing(tmp_path, capsys):
    peaked_checkpoint(tmp_path)
    page = write_explore(tmp_path)
    assert "wrote" in capsys.readouterr().out
    assert_loads_nothing(page)


@pytest.mark.parametrize("mask", ["causal", "none", "anticausal"])
def test_the_stored_weights_are_the_models_within_a_byte(tmp_path, mask):
    tokenizer, model = peaked_checkpoint(tmp_path, mask=mask)
    data = page_data(write_explore(tmp_path, f"--text={PIZZA}"))
    (p,) = data["panels"]
    maps = attention_maps(model, tokenizer.encode(PIZZA))  # (n_layer, nh, T, T), NaN where hidden
    shown = stored_maps(p)
    assert shown.isnan().equal(maps.isnan())  # the mask: nothing hidden is stored, nothing allowed is lost
    allowed = ~maps.isnan()
    assert ((shown[allowed] - maps[allowed]).abs() <= storage_error(maps[allowed])).all()
    assert maps[allowed].max() > 0.9 and maps[allowed].min() < 1e-3  # sharp heads: small and large weights both
    assert p["settings"]["mask"] == mask
    if mask == "causal":
        assert p["warning"] is None
    else:  # it says why this model's attention looks ahead, and where the mask experiment is
        assert f"mask={mask}" in p["warning"] and "(docs/experiments.md, the mask)" in p["warning"]
        assert (REPO_ROOT / "docs" / "experiments.md").is_file()
    assert [t["label"] for t in p["tokens"][3:5]] == ["\u2423", "p"] and p["tokens"][4]["word"] == "pizza"
    assert p["shape"] == {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 64, "vocab_size": tokenizer.vocab_size}


def test_the_next_tokens_are_the_models_at_every_position(tmp_path):
    tokenizer, model = peaked_checkpoint(tmp_path)
    (p,) = page_data(write_explore(tmp_path))["panels"]
    ids = tokenizer.encode(PIZZA)
    logits, _ = model(torch.tensor([ids]))  # (1, T, vocab): one ordinary forward pass
    probs = torch.softmax(logits[0, :, :tokenizer.vocab_size], dim=-1)  # (T, vocab)
    for t in (0, 36, len(ids) - 1):
        top = probs[t].topk(5)
        assert [label for label, _ in p["next"][t]["top"]] == [visualize.token_text(tokenizer, i) for i in top.indices]
        assert [q for _, q in p["next"][t]["top"]] == pytest.approx(top.values.tolist(), abs=1e-4)
    label, prob, rank = p["next"][36]["actual"]  # after "...and it" really comes " "
    assert label == "\u2423" and prob == pytest.approx(probs[36, ids[37]].item(), abs=1e-4)
    assert rank == int((probs[36] > probs[36, ids[37]]).sum()) + 1
    assert p["next"][-1]["actual"] is None


def test_compare_a_second_text_and_a_second_model(tmp_path):
    peaked_checkpoint(tmp_path / "causal")
    peaked_checkpoint(tmp_path / "none", mask="none", pos_encoding="rope")
    texts = page_data(write_explore(tmp_path / "causal", f"--compare={SWAPPED}"))["panels"]
    assert [p["text"] for p in texts] == [PIZZA, SWAPPED]
    models = page_data(write_explore(tmp_path / "causal", f"--compare_out_dir={tmp_path / 'none'}"))["panels"]
    assert [p["text"] for p in models] == [PIZZA, PIZZA]
    assert [p["settings"]["mask"] for p in models] == ["causal", "none"] and models[1]["warning"]
    assert [p["settings"]["pos_encoding"] for p in models] == ["learned", "rope"]
    assert str(tmp_path / "none") in models[1]["name"] and "(iter 7)" in models[1]["name"]
    both = page_data(write_explore(tmp_path / "causal", f"--compare={SWAPPED}", f"--compare_out_dir={tmp_path / 'none'}"))
    assert [p["text"] for p in both["panels"]] == [PIZZA, SWAPPED]


def concentrated(maps, query):
    """(layer, head) whose weight from `query` on one other token is largest, computed here independently."""
    best = (-1.0, None)
    for layer in range(maps.size(0)):
        for head in range(maps.size(1)):
            others = [w for s, w in enumerate(maps[layer, head, query].tolist()) if s != query and w == w]
            best = max(best, (max(others, default=0.0), (layer, head)))
    return best[1]


def test_the_page_opens_on_the_query_at_the_most_concentrated_head(tmp_path, capsys):
    tokenizer, model = peaked_checkpoint(tmp_path, n_layer=3)
    ids = tokenizer.encode(PIZZA)
    maps, it = attention_maps(model, ids), find_query(tokenizer, ids, "it")
    start = page_data(write_explore(tmp_path, "--query=it"))["panels"][0]["start"]
    layer, head = concentrated(maps, it)
    assert (start["query"], start["layer"], start["head"], start["pinned"]) == (it, layer, head, True)
    assert (layer, head) != (0, 0)  # where the page opened before: here it would show the wrong head
    assert f"it opens on 't' (position {it}), layer {layer}, head {head}: " in capsys.readouterr().out
    last = page_data(write_explore(tmp_path))["panels"][0]["start"]  # no --query: the last token, not pinned
    assert (last["query"], last["pinned"]) == (len(ids) - 1, False)
    assert (last["layer"], last["head"]) == concentrated(maps, len(ids) - 1)
    chosen = page_data(write_explore(tmp_path, "--query=it", "--layer=2"))["panels"][0]["start"]
    assert (chosen["layer"], chosen["head"]) == (2, concentrated(maps[2:], it)[1])
    chosen = page_data(write_explore(tmp_path, "--query=4", "--layer=1", "--head=0"))["panels"][0]["start"]
    assert (chosen["query"], chosen["layer"], chosen["head"]) == (4, 1, 0)
    assert "--head=2 is not one of the model's 2 heads (0..1)" in main_error_line(
        capsys, visualize, ["explore", f"--out_dir={tmp_path}", "--head=2"])


def test_bpe_tokens_read_as_words(tmp_path):
    try:
        tokenizer = load_tokenizer({"tokenizer": "gpt2", "vocab_size": 50257})
    except UserError:
        pytest.skip("GPT-2 BPE files unavailable")
    model = make_model(vocab_size=50304, n_embd=8, n_layer=1, n_head=2, block_size=32)
    (p,) = page_data(page_html([panel(model, tokenizer, PIZZA, "bpe")]))["panels"]
    assert [t["label"] for t in p["tokens"][:3]] == ["The", "pizza", "came"]
    assert [t["text"] for t in p["tokens"][:3]] == ["The", " pizza", " came"]  # the page keeps the space to show
    assert len(p["tokens"]) == 12 and all(len(row["top"]) == 5 for row in p["next"])
    # and the same text cut by characters and GPT-2's BPE, each token with its id (31.3: bytes, not U+FFFD)
    (p,) = page_data(page_html([panel(model, tokenizer, "Köln \U0001F600", "bpe")]))["panels"]
    chars, bpe = p["tokenizations"]
    assert chars["tokens"][:2] == [["K", 75], ["ö", 246]]
    assert bpe["tokens"] == [[piece, i] for piece, i in zip(["K", "ö", "ln", "\u2423<0xF0><0x9F><0x98>", "<0x80>"],
                                                            tokenizer.encode("Köln \U0001F600"))]
    assert [t["label"] for t in p["tokens"]][-2:] == ["<0xF0><0x9F><0x98>", "<0x80>"]


def test_bad_input_is_one_line(tmp_path, capsys):
    peaked_checkpoint(tmp_path)
    (tmp_path / "folder.html").mkdir()
    assert "is a folder" in main_error_line(capsys, visualize, ["explore", f"--out_dir={tmp_path}",
                                                                f"--out={tmp_path / 'folder.html'}"])
    assert "the text is empty" in main_error_line(capsys, visualize, ["explore", f"--out_dir={tmp_path}", "--text="])
    assert "no checkpoint in" in main_error_line(capsys, visualize, ["explore", f"--out_dir={tmp_path}",
                                                                     f"--compare_out_dir={tmp_path / 'nothing'}"])
    assert not (tmp_path / "attention.html").exists()  # nothing half-written


def test_the_page_for_the_6x384_model_at_256_tokens_is_small(shakespeare_text_session):
    """The file size the docs quote: a 6-layer, 6-head, 384-wide model on 256 characters."""
    tokenizer = CharTokenizer.from_text(shakespeare_text_session)
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=65))
    page = page_html([panel(model, tokenizer, shakespeare_text_session[:256], "6x384")])
    size = len(page.encode("utf-8"))
    print(f"the page at 256 tokens for 6x384: {size / 1e3:,.0f} kB")
    assert size < 2_000_000
    assert len(stored_maps(page_data(page)["panels"][0]).flatten()) == 6 * 6 * 256 * 256


def test_inline_puts_the_whole_page_in_an_iframe_for_notebooks(tmp_path):
    tokenizer, model = peaked_checkpoint(tmp_path)
    page = page_html([panel(model, tokenizer, PIZZA, "tiny")])
    frame = inline(page, height=500)
    srcdoc = re.fullmatch(r'<div><iframe srcdoc="([^"]*)" sandbox="allow-scripts" style="[^"]*500px[^"]*"></iframe></div>',
                          frame)
    assert srcdoc and html.unescape(srcdoc.group(1)) == page


# ---------------------------------------------------------------------------------------------
# a translation model (transformer.py): cross-attention, and the encoder's and the decoder's self-attention

SOURCE = "twenty-three"


def translator_checkpoint(out_dir):
    """A char-level encoder-decoder, randomly initialised with sharp heads (large query weights), that never writes
    EOS (its embedding row is zero, so its logit is 0 against others' larger): cut at block_size - 1 tokens."""
    tokenizer = CharTokenizer.from_text(SOURCE + " dreiundzwanzig, seven sieben")
    V = tokenizer.vocab_size
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(block_size=12, vocab_size=V + 3, n_layer=2, n_head=2, n_embd=16, dropout=0.0,
                                          pad_id=V, bos_id=V + 1, eos_id=V + 2))
    with torch.no_grad():
        for i, attention in enumerate([layer.attn.sublayer for layer in model.encoder] +
                                      [layer.cross_attn.sublayer for layer in model.decoder]):
            attention.c_q.weight.normal_(std=2.0, generator=torch.Generator().manual_seed(i))
        model.src_embed.weight[V + 2] = 0.0
    meta = {**tokenizer.meta(), "specials": {"pad": V, "bos": V + 1, "eos": V + 2}}
    save_checkpoint(Path(out_dir) / "best.pt", model, iter_num=5, meta=meta)
    return tokenizer, model_from_checkpoint(load_checkpoint(Path(out_dir) / "best.pt")).eval()


def weights_seen_by_hooks(model, src, tgt):
    """Every attention's weights in one forward pass, computed here from each attention module's input (seen by
    PyTorch's forward pre-hooks) and its projections: softmax(q k^T / sqrt(hs)), the decoder's under the causal
    mask. {"cross": (n_layer, nh, T, S), "encoder": (n_layer, nh, S, S), "decoder": (n_layer, nh, T, T)}."""
    seen = {"encoder": [], "cross": [], "decoder": []}

    def weights(q, k, allowed=None):  # (nh, T, hs), (nh, S, hs), (T, S) or None: all
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (nh, T, S)
        if allowed is None:
            return torch.softmax(scores, dim=-1)
        return torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1).masked_fill(~allowed, float("nan"))

    def encoder(module, args):
        x = args[0]
        seen["encoder"].append(weights(module.heads(module.c_q(x))[0], module.keys_values(x)[0][0]))

    def cross(module, args):
        x, _, (k, _) = args
        seen["cross"].append(weights(module.heads(module.c_q(x))[0], k[0]))

    def decoder(module, args):
        x = args[0]
        C, nh = x.size(-1), module.n_head
        q, k, _ = module.c_attn(x)[0].split(C, dim=-1)  # (T, C) each
        heads = lambda t: t.view(t.size(0), nh, C // nh).transpose(0, 1)  # (nh, T, hs)
        causal = torch.ones(x.size(1), x.size(1), dtype=torch.bool).tril()  # (T, T): t reads 0..t
        seen["decoder"].append(weights(heads(q), heads(k), causal))

    handles = [layer.attn.sublayer.register_forward_pre_hook(encoder) for layer in model.encoder]
    handles += [layer.cross_attn.sublayer.register_forward_pre_hook(cross) for layer in model.decoder]
    handles += [layer.self_attn.sublayer.register_forward_pre_hook(decoder) for layer in model.decoder]
    try:
        with torch.no_grad():
            model(src, tgt)
    finally:
        for handle in handles:
            handle.remove()
    return {kind: torch.stack(layers) for kind, layers in seen.items()}


def translated(model, tokenizer, sentence=SOURCE):
    """(source ids (1, S), the decoder's input (1, T): BOS and the greedy translation but its last token, the
    translation's T ids), computed with transformer.translate."""
    ids = torch.tensor([tokenizer.encode(sentence)])
    written = translate(model, ids)[0]
    return ids, torch.tensor([[model.config.bos_id] + written[:-1]]), written


def test_a_translation_page_holds_the_models_cross_encoder_and_decoder_attention(tmp_path, capsys):
    tokenizer, model = translator_checkpoint(tmp_path)
    page = write_explore(tmp_path, f"--start={SOURCE}")
    assert_loads_nothing(page)
    (p,) = page_data(page)["panels"]
    src, tgt, written = translated(model, tokenizer)
    assert len(written) == 11 and model.config.eos_id not in written  # cut at block_size - 1 tokens, with no EOS
    assert [t["id"] for t in p["tokens"]] == written  # and the page adds none
    assert [t["id"] for t in p["inputs"]] == tgt[0].tolist() and p["inputs"][0]["label"] == "BOS"
    assert "".join(t["label"] for t in p["source"]) == SOURCE and p["text"] == SOURCE
    assert p["translation"] == tokenizer.decode(written)
    expected = weights_seen_by_hooks(model, src, tgt)
    for kind, shape in (("cross", (2, 2, 11, 12)), ("encoder", (2, 2, 12, 12)), ("decoder", (2, 2, 11, 11))):
        shown = stored_maps(p, kind)
        assert shown.shape == expected[kind].shape == shape
        assert shown.isnan().equal(expected[kind].isnan())  # only the decoder's future is hidden
        allowed = ~shown.isnan()
        assert ((shown[allowed] - expected[kind][allowed]).abs() <= storage_error(expected[kind][allowed])).all()
    assert not stored_maps(p, "cross").isnan().any() and stored_maps(p, "decoder")[0, 0, 0, 1:].isnan().all()
    cross = expected["cross"]
    assert cross.max() > 0.9 and (cross[0, 0] - cross[1, 1]).abs().max() > 0.2  # sharp, and a wrong head would show
    # at every decoder position, what it wrote is its first choice: the translation is greedy
    assert [row["top"][0][0] for row in p["next"]] == [t["label"] for t in p["tokens"]]
    assert all(row["actual"][2] == 1 for row in p["next"])
    assert p["start"]["view"] == "cross" and (p["start"]["query"], p["start"]["pinned"]) == (0, False)
    out = capsys.readouterr().out
    assert "12 -> 11 tokens (source -> written)" in out
    assert f"it opens on cross-attention from the written {p['tokens'][0]['label']!r} (position 0)" in out
    # --query: a position (or a word) of the translation; a second sentence (--compare) in a second panel
    data = page_data(write_explore(tmp_path, f"--start={SOURCE}", "--query=3", "--compare=seven"))
    assert (data["panels"][0]["start"]["query"], data["panels"][0]["start"]["pinned"]) == (3, True)
    assert [q["text"] for q in data["panels"]] == [SOURCE, "seven"]


def test_bad_input_to_a_translation_page_is_one_line(tmp_path, capsys):
    translator_checkpoint(tmp_path / "translator")
    peaked_checkpoint(tmp_path / "gpt")
    explore = ["explore", f"--out_dir={tmp_path / 'translator'}"]
    assert "name the sentence to translate with --start" in main_error_line(capsys, visualize, explore + ["--start="])
    (tmp_path / "empty.txt").write_text("")
    assert "the sentence to translate is empty" in main_error_line(capsys, visualize,
                                                                   explore + [f"--start=FILE:{tmp_path / 'empty.txt'}"])
    assert "more than the 12 this model has positions for" in main_error_line(capsys, visualize,
                                                                              explore + ["--start=seven seven seven"])
    assert "give it once" in main_error_line(capsys, visualize, explore + ["--start=seven", "--text=eight"])
    assert "compares two models of one kind" in main_error_line(
        capsys, visualize, explore + [f"--start={SOURCE}", f"--compare_out_dir={tmp_path / 'gpt'}"])
    assert "is not one of the model's 2 heads" in main_error_line(capsys, visualize,
                                                                  explore + ["--start=seven", "--head=5"])
    assert not (tmp_path / "translator" / "attention.html").exists()  # nothing half-written


# ---------------------------------------------------------------------------------------------
# in a real browser


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium from Debian's package, driven by Playwright (never `playwright install`)."""
    def missing(reason):
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the browser test needs playwright: pip install playwright")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).is_file():
        missing("the browser test needs Chromium: apt-get install chromium (Debian's package)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


class Opened:
    """A page opened from disk, recording what it logs, what it throws and every request it makes."""

    def __init__(self, browser, path, viewport=(1440, 900)):
        self.context = browser.new_context(viewport=dict(width=viewport[0], height=viewport[1]))
        self.page = self.context.new_page()
        self.url = Path(path).resolve().as_uri()
        self.problems, self.requests = [], []
        self.page.on("console", lambda m: m.type in ("error", "warning") and self.problems.append(m.text))
        self.page.on("pageerror", lambda e: self.problems.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.context.route("**/*", lambda route: route.continue_() if route.request.url == self.url else route.abort())
        self.page.goto(self.url)

    def ready(self):
        self.page.wait_for_selector("body[data-ready]", timeout=15_000)
        return self

    def weights(self, panel_index):
        """The weights the page shows for each key of panel_index: a float, a list (all heads) or None (hidden)."""
        shown = self.page.eval_on_selector_all(f'section[data-panel="{panel_index}"] .tok', "cells => cells.map(c => c.dataset.w)")
        return [None if w == "" else [float(x) for x in w.split(",")] for w in shown]

    def selection(self, panel_index):
        box = self.page.locator(f'section[data-panel="{panel_index}"]')
        return int(box.get_attribute("data-layer")), box.get_attribute("data-head"), int(box.get_attribute("data-query"))

    def close(self):
        self.context.close()


def assert_panel_shows(opened, panel_index, maps, layer, head, query):
    assert opened.selection(panel_index) == (layer, str(head), query)
    assert_same_weights([None if w is None else w[0] for w in opened.weights(panel_index)], maps[layer, head, query])


def test_the_recorder_sees_a_request_when_a_page_makes_one(browser, tmp_path):
    """The check behind "no network request" can fail: a page with one outside image is caught."""
    leaky = tmp_path / "leaky.html"
    leaky.write_text('<!doctype html><img src="http://198.51.100.1/x.png"><script>document.body.dataset.ready = 1</script>')
    opened = Opened(browser, leaky).ready()
    opened.page.wait_for_timeout(200)
    assert "http://198.51.100.1/x.png" in opened.requests
    opened.close()


def test_pointing_at_it_shows_the_weights_the_model_computes(browser, tmp_path):
    tokenizer, model = peaked_checkpoint(tmp_path)
    write_explore(tmp_path, f"--compare={SWAPPED}", "--layer=0", "--head=0")
    ids = {text: tokenizer.encode(text) for text in (PIZZA, SWAPPED)}
    maps = [attention_maps(model, ids[PIZZA]), attention_maps(model, ids[SWAPPED])]
    it = find_query(tokenizer, ids[PIZZA], "it")  # the 't' of "it": position 36 in both texts
    assert it == find_query(tokenizer, ids[SWAPPED], "it") == 36
    # the layers and heads differ here by far more than the storage error: showing the wrong one would fail
    assert (maps[0][0, 0, it] - maps[0][1, 1, it]).abs().nan_to_num().max() > 0.2
    assert (maps[0][0, 0, it] - maps[1][0, 0, it]).abs().nan_to_num().max() > 0.05  # and so do the two texts

    opened = Opened(browser, tmp_path / "attention.html").ready()
    opened.page.hover(f'section[data-panel="0"] .tok[data-pos="{it}"]')
    for panel_index in (0, 1):  # the compare view shows both texts, at the same layer, head and position
        assert_panel_shows(opened, panel_index, maps[panel_index], 0, 0, it)
    opened.page.keyboard.press("ArrowDown")  # the next layer
    assert_panel_shows(opened, 0, maps[0], 1, 0, it)
    opened.page.keyboard.press("]")  # the next head
    for panel_index in (0, 1):
        assert_panel_shows(opened, panel_index, maps[panel_index], 1, 1, it)
    opened.page.click('button[data-layer="0"]')
    assert_panel_shows(opened, 1, maps[1], 0, 1, it)
    opened.page.keyboard.press("ArrowLeft")  # the token before: the space after "and"
    assert_panel_shows(opened, 0, maps[0], 0, 1, it - 1)
    opened.page.keyboard.press("ArrowRight")

    opened.page.keyboard.press("a")  # all heads at once: each key shows every head's weight
    assert opened.selection(0) == (0, "all", it)
    shown = opened.weights(0)
    for head in range(2):
        assert_same_weights([None if w is None else w[head] for w in shown], maps[0][0, head, it])
    colours = opened.page.eval_on_selector_all('section[data-panel="0"] .tok[data-pos="4"] .bars i',
                                               "bars => bars.map(b => getComputedStyle(b).backgroundColor)")
    assert len(colours) == 2 and len(set(colours)) == 2  # one bar per head, each in its own colour

    # beside it: where "it" looks most and what the model expects next, as the model says
    side = opened.page.locator('section[data-panel="0"] .side')
    ranked = side.locator(".rank").nth(1).locator(".lab").all_inner_texts()
    logits, _ = model(torch.tensor([ids[PIZZA]]))
    best = torch.softmax(logits[0, it, :tokenizer.vocab_size], dim=-1).topk(5).indices
    assert ranked == [visualize.token_text(tokenizer, i) for i in best]
    most = side.locator(".rank").nth(0).locator(".lab").first.evaluate("lab => lab.firstChild.textContent")
    mean = maps[0][0, :, it].mean(0).nan_to_num(-1)
    assert most == visualize.token_text(tokenizer, ids[PIZZA][int(mean.argmax())])
    assert opened.problems == [] and opened.requests == [opened.url]
    # under the panels, each text cut by the model's characters and by GPT-2's BPE, one box per token
    rows = opened.page.locator("#tokenizers .row")
    assert rows.count() == 4 and rows.nth(0).locator(".tk").count() == len(PIZZA)
    opened.close()


def test_pointing_at_a_written_token_shows_which_source_tokens_it_reads(browser, tmp_path):
    """The translation page: cross-attention, the tokens written above the source; then the encoder's and the
    decoder's self-attention (`v`), each showing what the model computes; and the model view's T x S maps."""
    tokenizer, model = translator_checkpoint(tmp_path)
    write_explore(tmp_path, f"--start={SOURCE}", "--layer=0", "--head=0")
    maps = weights_seen_by_hooks(model, *translated(model, tokenizer)[:2])
    opened = Opened(browser, tmp_path / "attention.html").ready()
    box = opened.page.locator('section[data-panel="0"]')

    def shows(view, layer, head, query):
        assert (box.get_attribute("data-view"), opened.selection(0)) == (view, (layer, str(head), query))
        stage = f'section[data-panel="0"] .stage[data-view="{view}"]'
        assert opened.page.locator(f"{stage} .q-row .tok.query").get_attribute("data-pos") == str(query)
        shown = opened.page.eval_on_selector_all(f"{stage} .k-row .tok", "cells => cells.map(c => c.dataset.w)")
        assert_same_weights([None if w == "" else float(w) for w in shown], maps[view][layer, head, query])

    cross = 'section[data-panel="0"] .stage[data-view="cross"]'
    assert opened.page.locator(f"{cross} .q-row .tok").count() == 11  # the tokens written, above
    assert opened.page.locator(f"{cross} .k-row .tok").count() == len(SOURCE)  # the source, below
    opened.page.hover(f'{cross} .q-row .tok[data-pos="4"]')
    shows("cross", 0, 0, 4)
    assert opened.page.locator(f"{cross} svg.arcs path").count() > 0  # lines down to the source tokens it reads
    opened.page.keyboard.press("ArrowDown")
    opened.page.keyboard.press("]")
    shows("cross", 1, 1, 4)
    opened.page.mouse.move(0, 0)
    opened.page.keyboard.press("v")  # the encoder: the source reading itself
    opened.page.hover('section[data-panel="0"] .stage[data-view="encoder"] .tok[data-pos="7"]')
    shows("encoder", 1, 1, 7)
    opened.page.mouse.move(0, 0)
    opened.page.keyboard.press("v")  # the decoder, causal: back on decoder position 4, the future hidden
    shows("decoder", 1, 1, 4)
    assert "which writes" in box.locator(".side .q").inner_text()
    opened.page.keyboard.press("v")
    opened.page.keyboard.press("m")  # the model view: a map per layer and head, 11 written tokens x 12 source
    canvases = opened.page.locator("#grids canvas")
    assert canvases.count() == 4
    width, height = (int(canvases.first.get_attribute(a)) for a in ("width", "height"))
    assert width * 11 == height * 12
    assert opened.problems == [] and opened.requests == [opened.url]
    opened.close()


def test_the_model_view_shows_every_layer_and_head_and_opens_one(browser, tmp_path):
    tokenizer, model = peaked_checkpoint(tmp_path, n_layer=3)
    write_explore(tmp_path)
    maps = attention_maps(model, tokenizer.encode(PIZZA))
    opened = Opened(browser, tmp_path / "attention.html").ready()
    opened.page.keyboard.press("m")
    assert opened.page.locator("#model-view").is_visible() and not opened.page.locator("#head-view").is_visible()
    assert opened.page.locator("#grids canvas").count() == 3 * 2
    opened.page.click('#grids canvas[data-layer="2"][data-head="1"]')
    assert opened.page.locator("#head-view").is_visible()
    assert_panel_shows(opened, 0, maps, 2, 1, len(tokenizer.encode(PIZZA)) - 1)  # it starts on the last token
    assert opened.problems == [] and opened.requests == [opened.url]
    opened.close()


def test_the_page_opens_on_the_query_and_the_compared_maps_name_their_texts(browser, tmp_path):
    """--query=it: the page opens on "it" at the most concentrated head, with no key pressed (a newcomer once
    needed 36); in the model view each panel's title carries its own text."""
    tokenizer, model = peaked_checkpoint(tmp_path, n_layer=3)
    write_explore(tmp_path, "--query=it", f"--compare={SWAPPED}")
    ids = tokenizer.encode(PIZZA)
    maps, it = attention_maps(model, ids), find_query(tokenizer, ids, "it")
    layer, head = concentrated(maps, it)
    opened = Opened(browser, tmp_path / "attention.html").ready()
    assert_panel_shows(opened, 0, maps, layer, head, it)
    opened.page.mouse.move(5, 5)  # pinned: moving the mouse over the page keeps "it"
    opened.page.hover('section[data-panel="0"] .tok[data-pos="3"]')
    assert opened.selection(0) == (layer, str(head), it)
    opened.page.keyboard.press("m")
    titles = opened.page.locator("#grids .gridbox h2").all_inner_texts()
    assert len(titles) == 2 and titles[0] != titles[1]
    assert [t.split("\u201c")[1].rstrip("\u201d") for t in titles] == [PIZZA, SWAPPED]
    assert opened.problems == [] and opened.requests == [opened.url]
    opened.close()


def test_the_notebook_iframe_runs_the_page(browser, tmp_path):
    tokenizer, model = peaked_checkpoint(tmp_path)
    notebook = tmp_path / "notebook.html"  # what Jupyter puts in the output cell: the iframe, in a page of its own
    notebook.write_text(f"<!doctype html><body>{inline(page_html([panel(model, tokenizer, PIZZA, 'tiny')]))}</body>")
    opened = Opened(browser, notebook)
    frame = opened.page.frame_locator("iframe")
    frame.locator("body[data-ready]").wait_for(timeout=15_000)
    assert frame.locator('section[data-panel="0"] .tok').count() == len(PIZZA)
    assert opened.problems == [] and opened.requests == [opened.url]
    opened.close()


def test_screenshots_of_the_head_view_on_it_and_of_the_model_view(browser, tmp_path):
    """Pictures of the page for the docs: EXPLORE_SCREENSHOTS=out-lab takes them from that trained run into
    docs/; without it, from a tiny model into a temporary folder."""
    run = os.environ.get("EXPLORE_SCREENSHOTS")
    if run:
        trained = load_trained(run)
        tokenizer, model, out, dest = trained.tokenizer, trained.model, Path(run), REPO_ROOT / "docs"
    else:
        (tokenizer, model), out, dest = peaked_checkpoint(tmp_path), tmp_path, tmp_path
    visualize.main(["explore", f"--out_dir={out}", f"--compare={SWAPPED}", f"--out={tmp_path / 'shot.html'}"])
    ids = tokenizer.encode(PIZZA)
    it = find_query(tokenizer, ids, "it")
    # the head that gives the nouns the most weight: the question the page is for ("pizza or oven?")
    nouns = sum(w for word, w in word_weights(tokenizer, ids, attention_maps(model, ids)[:, :, it, :it + 1]).items()
                if word in ("pizza", "oven"))  # (n_layer, nh)
    layer, head = divmod(int(nouns.argmax()), nouns.size(1))
    opened = Opened(browser, tmp_path / "shot.html", viewport=(1366, 768)).ready()
    opened.page.click(f'button[data-layer="{layer}"]')
    opened.page.click(f'button[data-head="{head}"]')
    opened.page.click(f'section[data-panel="0"] .tok[data-pos="{it}"]')  # pinned
    opened.page.mouse.move(0, 0)
    opened.page.screenshot(path=dest / "explore_head.png")
    opened.page.keyboard.press("m")
    opened.page.screenshot(path=dest / "explore_model.png")
    assert png_size(dest / "explore_head.png") == png_size(dest / "explore_model.png") == (1366, 768)
    assert opened.problems == [] and opened.requests == [opened.url]
    opened.close()


def test_screenshot_of_a_translations_cross_attention(browser, tmp_path):
    """The picture of the translation page for the docs: EXPLORE_TRANSLATION_SCREENSHOT=out-translate-numbers-de
    takes it from that trained run into docs/explore_translation.png; without it, from a tiny model into a
    temporary folder."""
    run = os.environ.get("EXPLORE_TRANSLATION_SCREENSHOT")
    if run:
        out, dest = Path(run), REPO_ROOT / "docs"
    else:
        (_, _), out, dest = translator_checkpoint(tmp_path), tmp_path, tmp_path
    # the 'd' of "drei", pinned, at the head where it reads the "three" at the end of the English (docs/explore.md)
    visualize.main(["explore", f"--out_dir={out}", f"--start={SOURCE}", "--query=0", "--layer=1", "--head=1",
                    f"--out={tmp_path / 'shot.html'}"])
    opened = Opened(browser, tmp_path / "shot.html", viewport=(1366, 768)).ready()
    opened.page.mouse.move(0, 0)
    assert opened.selection(0) == (1, "1", 0)
    opened.page.screenshot(path=dest / "explore_translation.png", clip=dict(x=0, y=0, width=1366, height=560))
    assert png_size(dest / "explore_translation.png") == (1366, 560)
    assert opened.problems == [] and opened.requests == [opened.url]
    opened.close()
