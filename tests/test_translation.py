"""The encoder-decoder (transformer.py) and its data: masks, caches, decoding, prepare.py's pairs and their errors."""

import dataclasses
import json
import re

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, png_size, snapshot
import experiment
from gptkit.checkpoint import load_checkpoint, model_from_checkpoint
from gptkit.runlog import read_log
from gptkit.data import PairData, model_inputs, model_vocab_size
from gptkit.decode import beam_search
from gptkit.errors import UserError
from gptkit.memory import kv_cache_bytes_per_token
from gptkit.runrecord import count_params
from gptkit.tokenizer import load_tokenizer
from gptkit.translation import greedy_translations, translation_scores
import model as model_module
from model import GPT, GPTConfig
import prepare
import transformer
from transformer import Transformer, TransformerConfig, TranslationDecoder, translate, until_eos

pytestmark = pytest.mark.usefixtures("one_thread")

PAD, BOS, EOS = 21, 22, 23


def tiny_transformer(seed=0, **overrides):
    torch.manual_seed(seed)
    settings = dict(block_size=16, vocab_size=24, n_layer=2, n_head=2, n_embd=16, dropout=0.0,
                    pad_id=PAD, bos_id=BOS, eos_id=EOS)
    return Transformer(TransformerConfig(**{**settings, **overrides})).eval()


def sources(seed=0):
    """Three sources of lengths 7, 4 and 6, padded to 7."""
    src = torch.randint(0, 21, (3, 7), generator=torch.Generator().manual_seed(seed))
    src[1, 4:], src[2, 6:] = PAD, PAD
    return src


@pytest.mark.parametrize("norm_position", ["post", "pre"])
def test_shapes_and_a_loss_that_ignores_padded_targets(norm_position):
    model = tiny_transformer(norm_position=norm_position)
    src, tgt = sources(), torch.randint(0, 21, (3, 5))
    targets = torch.randint(0, 21, (3, 5))
    logits, loss = model(src, tgt, targets)
    assert logits.shape == (3, 5, 24)
    targets[1, 3:] = -1  # padding: whatever the logits there, the loss is the mean over the rest
    kept = targets != -1
    expected = torch.nn.functional.cross_entropy(logits[kept], targets[kept])
    assert torch.allclose(model(src, tgt, targets)[1], expected)


def test_a_padded_source_translates_exactly_as_it_does_alone():
    model = tiny_transformer()
    src, tgt = sources(), torch.full((3, 3), BOS)
    batched, _ = model(src, tgt)
    alone, _ = model(src[1:2, :4], tgt[1:2])
    assert torch.allclose(batched[1], alone[0], atol=1e-5)
    # without the padding mask the padded keys would be read: the same source with other padding ids differs
    model.config.pad_id = 0
    assert not torch.allclose(model(src, tgt)[0][1], alone[0], atol=1e-3)


def test_the_encoder_reads_the_whole_source_and_the_decoder_only_the_past():
    model = tiny_transformer()
    src = sources()[:1]
    memory, _ = model.encode(src)
    changed = src.clone()
    changed[0, -1] = (changed[0, -1] + 1) % 21
    # no causal mask in the encoder: the first source position sees the last
    assert not torch.allclose(model.encode(changed)[0][0, 0], memory[0, 0])
    tgt = torch.tensor([[BOS, 3, 4, 5]])
    later = tgt.clone()
    later[0, -1] = 6
    # the decoder's causal mask: changing the last target token changes no earlier position's logits
    assert torch.allclose(model(src, tgt)[0][0, :-1], model(src, later)[0][0, :-1])


def test_cross_attention_queries_come_from_the_target_and_never_read_padding():
    model = tiny_transformer()
    seen = {}
    cross = model.decoder[0].cross_attn.sublayer
    cross.attend, cross.tap = cross.step_by_step, lambda **named: seen.update(named)
    src = sources()
    model(src, torch.full((3, 5), BOS))
    weights = seen["softmax"]  # (B, nh, T, S): one row per target position, one column per source token
    assert weights.shape == (3, 2, 5, 7)
    assert torch.allclose(weights.sum(-1), torch.ones(3, 2, 5))
    assert (weights[1, :, :, 4:] == 0).all() and (weights[1, :, :, :4] > 0).all()  # source 1 has 4 tokens


def test_fused_and_step_by_step_attention_agree():
    model = tiny_transformer()
    src, tgt = sources(), torch.randint(0, 21, (3, 5))
    fused, _ = model(src, tgt)
    for attention in [*(layer.attn for layer in model.encoder), *(layer.cross_attn for layer in model.decoder)]:
        attention.sublayer.attend = attention.sublayer.step_by_step
    assert torch.allclose(model(src, tgt)[0], fused, atol=1e-5)


@pytest.mark.parametrize("norm_position", ["post", "pre"])
def test_greedy_and_beam_give_the_same_translation_with_and_without_the_cache(norm_position):
    model = tiny_transformer(seed=3, norm_position=norm_position)
    src = sources(seed=1)
    cached, uncached = translate(model, src, 10, use_cache=True), translate(model, src, 10, use_cache=False)
    assert cached == uncached and any(cached)
    for row in range(2):
        one = src[row:row + 1]
        beams = {use_cache: beam_search(model, None, 10, 3, eos=EOS, decoder=TranslationDecoder(model, one, use_cache))
                 for use_cache in (True, False)}
        assert [t for t, _ in beams[True]] == [t for t, _ in beams[False]]
        assert torch.allclose(torch.tensor([s for _, s in beams[True]]), torch.tensor([s for _, s in beams[False]]))
        greedy = beam_search(model, None, 10, 1, eos=EOS, decoder=TranslationDecoder(model, one))[0][0]
        assert until_eos(greedy, EOS) == cached[row]


def test_shared_embeddings_are_one_matrix_and_unshared_are_three():
    shared, unshared = tiny_transformer(), tiny_transformer(shared_embeddings=False)
    assert shared.src_embed.weight is shared.tgt_embed.weight is shared.lm_head.weight
    assert len({id(unshared.src_embed.weight), id(unshared.tgt_embed.weight), id(unshared.lm_head.weight)}) == 3
    assert unshared.num_params() - shared.num_params() == 2 * 24 * 16


class SourceKept(transformer.Attention):
    """An attention part whose kv is the source itself (what learn.py's cross_attention trains with): forward makes
    the keys and values each time."""

    def keys_values(self, source):
        return (source,)  # (B, S, C)

    def forward(self, x, allowed, kv=None):
        source = x if kv is None else kv[0]
        return super().forward(x, allowed, super().keys_values(source))


def test_a_transformer_is_built_from_the_attention_part_it_is_given():
    plain = tiny_transformer(seed=4)
    with transformer.using_parts(attention=SourceKept):
        kept = tiny_transformer(seed=4)
    assert transformer.PARTS.attention is transformer.Attention and model_module.PARTS == model_module.Parts()  # restored
    assert all(type(layer.attn.sublayer) is SourceKept for layer in kept.encoder)
    assert all(type(layer.cross_attn.sublayer) is SourceKept for layer in kept.decoder)
    assert all(type(layer.self_attn.sublayer) is model_module.CausalSelfAttention for layer in kept.decoder)
    assert type(tiny_transformer().encoder[0].attn.sublayer) is transformer.Attention
    assert kept.state_dict().keys() == plain.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(kept.state_dict().values(), plain.state_dict().values()))
    # the same weights translate alike, greedily and by beam search (which keeps its beams' cached kv)
    src = sources(seed=1)
    assert translate(kept, src, 10) == translate(kept, src, 10, use_cache=False) == translate(plain, src, 10)
    beams = [beam_search(m, None, 10, 3, eos=EOS, decoder=TranslationDecoder(m, src[:1])) for m in (kept, plain)]
    assert [t for t, _ in beams[0]] == [t for t, _ in beams[1]]


def test_impossible_settings_are_refused():
    with pytest.raises(ValueError, match="norm_position='middle'"):
        tiny_transformer(norm_position="middle")
    with pytest.raises(ValueError, match="eos_id=24 is outside the vocabulary of 24"):
        tiny_transformer(eos_id=24)
    with pytest.raises(ValueError, match="not divisible by n_head"):
        tiny_transformer(n_head=3)


# ---------------------------------------------------------------------------------------------
# the data


@pytest.fixture(scope="session")
def numbers_de_pairs():
    return prepare.numbers_de_pairs()


@pytest.fixture(scope="session")
def numbers_de_dir(tmp_path_factory, numbers_de_pairs):
    """data_dir/numbers_de written by prepare.py's own function."""
    data_dir = tmp_path_factory.mktemp("data")
    prepare.prepare_pairs(numbers_de_pairs, data_dir / "numbers_de", "char", "num2words")
    return data_dir / "numbers_de"


@pytest.fixture(scope="session")
def small_pairs_dir(tmp_path_factory, numbers_de_pairs):
    """A data_dir holding numbers_de's first 400 pairs as the dataset `numbers`: quick to train and evaluate."""
    data_dir = tmp_path_factory.mktemp("data")
    prepare.prepare_pairs(numbers_de_pairs[:400], data_dir / "numbers", "char", "num2words, 0 to 399")
    return data_dir


def read_pairs(dataset_dir, split):
    meta = json.loads((dataset_dir / "meta.json").read_text())
    tokenizer = load_tokenizer(meta)
    ids = np.fromfile(dataset_dir / f"{split}.bin", dtype=np.uint16).tolist()
    bos, eos = meta["specials"]["bos"], meta["specials"]["eos"]
    text = "".join(tokenizer.decode([i]) if i < meta["vocab_size"] else {bos: "\t", eos: "\n"}[i] for i in ids)
    return [tuple(line.split("\t")) for line in text.splitlines()]


def test_numbers_de_holds_every_number_once_and_holds_out_numbers_never_trained_on(numbers_de_dir):
    train, val = read_pairs(numbers_de_dir, "train"), read_pairs(numbers_de_dir, "val")
    assert len(train) + len(val) == prepare.NUMBERS_DE_LIMIT and 0.08 < len(val) / prepare.NUMBERS_DE_LIMIT < 0.12
    assert not {src for src, _ in train} & {src for src, _ in val}
    pairs = dict(train + val)
    assert pairs["four thousand, seven hundred and eleven"] == "viertausendsiebenhundertelf"
    assert pairs["twenty-three"] == "dreiundzwanzig"
    meta = json.loads((numbers_de_dir / "meta.json").read_text())
    assert meta["specials"] == {"eos": meta["vocab_size"], "pad": meta["vocab_size"] + 1, "bos": meta["vocab_size"] + 2}
    assert (meta["train_pairs"], meta["val_pairs"]) == (len(train), len(val))


@pytest.mark.parametrize("layout", PairData.LAYOUTS)
def test_pair_batches_are_padded_and_their_targets_cover_the_target_alone(numbers_de_dir, layout):
    data = PairData(numbers_de_dir, 96, layout=layout)
    pad, bos, eos = (data.specials[k] for k in ("pad", "bos", "eos"))
    rows = [0, 5, 9]
    x, targets = data.get_batch("train", 3, None, starts=torch.tensor(rows))
    inputs = model_inputs(x)  # (src, tgt), or (x,) for a GPT
    pairs = [data.pairs["train"][row] for row in rows]
    if layout == "encoder_decoder":
        expected = {"src": [src for src, _ in pairs], "tgt": [[bos, *tgt] for _, tgt in pairs]}
        expected_targets = [[*tgt, eos] for _, tgt in pairs]
    else:
        expected = {"x": [[*src, bos, *tgt] for src, tgt in pairs]}
        expected_targets = [[-1] * len(src) + [*tgt, eos] for src, tgt in pairs]
    for batch, rows_expected in zip(inputs, expected.values()):
        assert batch.size(1) == max(map(len, rows_expected))  # cut to the batch's longest
        assert batch.tolist() == [row + [pad] * (batch.size(1) - len(row)) for row in rows_expected]
    assert targets.tolist() == [row + [-1] * (targets.size(1) - len(row)) for row in expected_targets]


def test_a_source_longer_than_the_models_positions_is_one_line_naming_the_fix(numbers_de_dir):
    with pytest.raises(UserError, match=r"the longest source in the train split of 'numbers_de' has 47 tokens, more than "
                                        r"the model's block_size=32 positions; set --block_size=47 or more"):
        PairData(numbers_de_dir, 32)
    with pytest.raises(UserError, match=r"source \+ BOS \+ target .* has 90 tokens"):
        PairData(numbers_de_dir, 64, layout="decoder_only")


def write_parallel(tmp_path, src_lines, tgt_lines):
    (tmp_path / "en.txt").write_text("\n".join(src_lines) + "\n", encoding="utf-8")
    (tmp_path / "de.txt").write_text("\n".join(tgt_lines) + "\n", encoding="utf-8")
    return tmp_path / "en.txt", tmp_path / "de.txt"


SENTENCES = [("a cat sleeps.", "eine Katze schläft."), ("two dogs run.", "zwei Hunde rennen."),
             ("the sun shines.", "die Sonne scheint."), ("we read a book.", "wir lesen ein Buch.")] * 10


@pytest.mark.parametrize("tokenizer", ["char", "gpt2"])
def test_prepare_translation_round_trips_a_parallel_text(tmp_path, forked, tokenizer):
    src, tgt = write_parallel(tmp_path, [f"{s} {i}" for i, (s, _) in enumerate(SENTENCES)],
                              [f"{t} {i}" for i, (_, t) in enumerate(SENTENCES)])
    result = forked("prepare.py", "translation", f"--src={src}", f"--tgt={tgt}", "--name=mine",
                    f"--tokenizer={tokenizer}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.match(r"prepared data/mine: \d+ train \+ \d+ val pairs", result.stdout)
    pairs = read_pairs(tmp_path / "data" / "mine", "train") + read_pairs(tmp_path / "data" / "mine", "val")
    assert sorted(pairs) == sorted((f"{s} {i}", f"{t} {i}") for i, (s, t) in enumerate(SENTENCES))


@pytest.mark.parametrize("src_lines, tgt_lines, message", [
    (["one", "two", "three"], ["eins", "zwei"], r"--src .*en\.txt has 3 lines but --tgt .*de\.txt has 2; line i of one"),
    (["one", "", "three"], ["eins", "zwei", "drei"], r"line 2 of .*en\.txt is empty, .* remove line 2 from both files"),
    (["one", "two", "three"], ["eins", " ", "drei"], r"line 2 of .*de\.txt is empty"),
])
def test_bad_parallel_files_are_one_line_and_leave_the_dataset_as_it_was(tmp_path, forked, src_lines, tgt_lines,
                                                                          message):
    prepare.prepare_pairs(SENTENCES, tmp_path / "data" / "mine", "char", "the sentences")
    before = snapshot(tmp_path / "data")
    src, tgt = write_parallel(tmp_path, src_lines, tgt_lines)
    result = forked("prepare.py", "translation", "--name=mine", f"--src={src}", f"--tgt={tgt}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and re.match("error: " + message, result.stderr), result.stderr
    assert snapshot(tmp_path / "data") == before


# ---------------------------------------------------------------------------------------------
# evaluation


def test_scores_count_exact_matches_and_bleu_counts_characters_for_a_char_level_model():
    references = ["dreiundzwanzig", "viertausendeins", "elf", "null"]
    perfect = translation_scores(references, references, char_level=True)
    assert perfect == {"exact_match": 1.0, "bleu": pytest.approx(100.0), "chrf": 100.0}
    one_wrong = translation_scores(["dreiundzwanzig", "viertausend", "elf", "null"], references, char_level=True)
    assert one_wrong["exact_match"] == 0.75 and 50 < one_wrong["bleu"] < 100 and 50 < one_wrong["chrf"] < 100
    # word BLEU has no 2-grams in one-word sentences: 0 even when every translation is right
    assert translation_scores(references, references, char_level=False)["bleu"] == 0.0


@pytest.mark.parametrize("kind", ["transformer", "gpt"])
def test_greedy_translations_of_a_batch_are_those_of_each_source_alone(kind):
    specials = {"pad": PAD, "bos": BOS, "eos": EOS}
    if kind == "transformer":
        model = tiny_transformer(seed=3)
    else:
        torch.manual_seed(3)
        model = GPT(GPTConfig(block_size=24, vocab_size=24, n_layer=2, n_head=2, n_embd=16)).eval()
    rows = [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10, 11, 12], [13, 14, 15]]  # two of one length: one batch for a GPT
    together = greedy_translations(model, rows, specials)
    assert together == [greedy_translations(model, [row], specials)[0] for row in rows]
    assert all(EOS not in hyp for hyp in together)  # each cut at its end


# ---------------------------------------------------------------------------------------------
# through train.py and sample.py

TINY = ("--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=48", "--batch_size=8", "--max_iters=4",
        "--eval_interval=4", "--eval_first=False", "--eval_iters=1", "--device=cpu", "--threads=1", "--dataset=numbers")


@pytest.fixture(scope="module")
def translator(tmp_path_factory, small_pairs_dir, forked):
    """config/translate_numbers_de.py trained 4 steps at a tiny size by train.py."""
    root = tmp_path_factory.mktemp("translator")
    result = forked("train.py", REPO_ROOT / "config" / "translate_numbers_de.py", *TINY, f"--data_dir={small_pairs_dir}",
                    "--out_dir=out", cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    return root


def test_train_logs_exact_match_bleu_and_chrf_and_records_the_model_kind(translator):
    (record,) = read_log(translator / "out")
    assert {"exact_match", "bleu", "chrf", "val_loss"} <= record.keys()
    assert 0 <= record["exact_match"] <= 1 and 0 <= record["chrf"] <= 100
    ckpt = torch.load(translator / "out" / "ckpt.pt", weights_only=True)
    assert ckpt["model_kind"] == "transformer" and ckpt["model_args"]["norm_position"] == "post"
    assert ckpt["model_args"]["eos_id"] == ckpt["meta"]["specials"]["eos"]


def test_sample_translates_greedily_and_beam_width_1_is_the_greedy_translation(translator, forked):
    args = ("--out_dir=out", "--start=twenty-three", "--max_new_tokens=12")
    greedy = forked("sample.py", *args, cwd=translator)
    assert greedy.returncode == 0, greedy.stderr
    assert greedy.stdout.count("\n") == 1 and "twenty" not in greedy.stdout  # the translation alone
    beam = forked("sample.py", *args, "--beam_width=1", cwd=translator)
    assert beam.returncode == 0, beam.stderr
    assert beam.stdout == greedy.stdout  # the text alone, as a GPT's beams: the score goes to stderr
    assert beam.stderr.startswith("[beam 1, score -")


def test_a_source_too_long_for_the_models_positions_is_one_line(translator, forked):
    result = forked("sample.py", "--out_dir=out", f"--start={'one hundred and one ' * 4}", cwd=translator)
    assert result.returncode == 2
    assert result.stderr == ("error: the sentence to translate is 80 tokens long, more than the 48 this model has "
                             "positions for (block_size=48); shorten it\n")


def test_a_block_size_too_short_for_the_pairs_stops_training_before_it_starts(tmp_path, small_pairs_dir, forked):
    result = forked("train.py", REPO_ROOT / "config" / "translate_numbers_de.py", *TINY, "--block_size=16",
                    f"--data_dir={small_pairs_dir}", "--out_dir=out", cwd=tmp_path)
    assert result.returncode == 2 and not (tmp_path / "out").exists()
    assert result.stderr.startswith("error: the longest source in the train split of 'numbers' has 31 tokens, more "
                                    "than the model's block_size=16 positions; set --block_size=31 or more")


def test_a_gpt_trains_on_the_same_pairs_as_source_bos_target(tmp_path, small_pairs_dir, forked):
    result = forked("train.py", REPO_ROOT / "config" / "translate_numbers_de_gpt.py", *TINY, "--block_size=80",
                    f"--data_dir={small_pairs_dir}", "--out_dir=out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    (record,) = read_log(tmp_path / "out")
    assert "exact_match" in record
    translated = forked("sample.py", "--out_dir=out", "--start=seven", "--max_new_tokens=6", cwd=tmp_path)
    assert translated.returncode == 0 and translated.stdout.count("\n") == 1


# ---------------------------------------------------------------------------------------------
# "Do we need the encoder?": experiment.py runs both configs as they are and compares them


def test_experiment_compares_the_encoder_decoder_with_a_gpt_of_its_size(tmp_path, small_pairs_dir, capsys):
    root = tmp_path / "exp"
    experiment.main([str(REPO_ROOT / "config" / "sweep_encoder.py"), *TINY, "--block_size=80", "--eval_interval=2",
                     "--log_interval=1", "--jobs=2", f"--data_dir={small_pairs_dir}", f"--out_root={root}"])
    table = capsys.readouterr().out.splitlines()
    head = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert head[:2] == ["config", "train loss"]
    assert {"exact match", "best exact match", "BLEU", "chrF", "tokens/s", "params", "KV bytes/token"} <= set(head)
    rows = {cells[0]: dict(zip(head, cells)) for cells in
            ([cell.strip() for cell in line.strip("|").split("|")] for line in table[2:4])}
    assert rows.keys() == {"translate_numbers_de", "translate_numbers_de_gpt"}
    for name, row in rows.items():
        log = read_log(root / name)
        assert [r["iter"] for r in log] == [2, 4]  # the sweep's settings went to both runs
        model = model_from_checkpoint(load_checkpoint(root / name / "ckpt.pt"))
        assert type(model) is {"translate_numbers_de": Transformer, "translate_numbers_de_gpt": GPT}[name]
        assert row["params"] == f"{sum(p.numel() for p in model.parameters()):,}"  # the model train.py built
        assert row["exact match"] == f"{log[-1]['exact_match']:.1%}" and row["chrF"] == f"{log[-1]['chrf']:.1f}"
        assert int(row["tokens/s"].replace(",", "")) == log[-1]["tokens_per_s"] > 0
    assert rows["translate_numbers_de"]["KV bytes/token"] == "128"  # 2 (k, v) x 1 layer x 16 channels x 4 bytes
    assert "KV bytes/token of an encoder-decoder" in table[-1]
    assert (root / "config.md").read_text().splitlines() == table
    assert png_size(root / "config.png") == (1200, 960)  # 3 loss panels, exact match and tokens/s


@pytest.mark.parametrize("args, error", [
    (["--vary=config=config/translate_numbers_de.py,config/translate_numbrs_de_gpt.py"],
     "error: --vary=config: config file 'config/translate_numbrs_de_gpt.py' not found (did you mean "
     "config/translate_numbers_de_gpt.py?); see config/ for the available ones"),
    (["config/translate_numbers_de.py", "--vary=config=config/translate_numbers_de.py,config/lab_char_cpu.py"],
     "error: --vary=config names each run's training config, so there is no other to start from: drop "
     "config/translate_numbers_de.py (or the sweep config's `config = ` line)"),
    (["--vary=config=config/sweep_mask.py,config/lab_char_cpu.py"],
     "error: --vary=config: config/sweep_mask.py is a sweep config (it sets vary); name training configs, e.g. "
     "--vary=config=config/translate_numbers_de.py,config/translate_numbers_de_gpt.py"),
    (["config/sweep_encoder.py", "--norm_position=pre"],
     "error: run translate_numbers_de_gpt: norm_position is not a setting of its model (GPTConfig), but every run "
     "is given it; set it in the config file of the runs it is for"),
    (["config/lab_char_cpu.py", "--walk=config=config/translate_numbers_de.py"],
     "error: --walk config: a walk changes the settings of one training config; compare configs with "
     "--vary=config=A.py,B.py"),
])
def test_a_bad_config_comparison_is_one_line_before_any_run_starts(args, error, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(experiment.Training, "__init__", lambda *a: pytest.fail("a run started"))
    with pytest.raises(SystemExit) as e:
        experiment.main([*args, f"--out_root={tmp_path}"])
    assert e.value.code == 2 and capsys.readouterr().err == error + "\n"


def test_the_comparison_plans_each_config_as_it_is_with_its_own_model_settings(tmp_path):
    _, keys, runs = experiment.plan(["config/sweep_encoder.py", "--max_iters=8", f"--out_root={tmp_path}"])
    transformer, gpt = runs
    assert keys == ["config"] and [r["combo"] for r in runs] == [(("config", "translate_numbers_de"),),
                                                                (("config", "translate_numbers_de_gpt"),)]
    assert transformer["args"][:3] == ["config/translate_numbers_de.py", "--eval_interval=100", "--max_iters=8"]
    assert type(transformer["model_cfg"]) is TransformerConfig and transformer["model_cfg"].norm_position == "post"
    assert type(gpt["model_cfg"]) is GPTConfig and gpt["model_cfg"].block_size == 90  # each file's own settings
    assert {r["train_cfg"].eval_interval for r in runs} == {100} and {r["train_cfg"].max_iters for r in runs} == {8}
    (tmp_path / "lab_char_cpu.py").write_text((REPO_ROOT / "config" / "lab_char_cpu.py").read_text())
    with pytest.raises(UserError, match="two config files share a name"):
        experiment.plan([f"--vary=config=config/lab_char_cpu.py,{tmp_path / 'lab_char_cpu.py'}"])


@pytest.mark.parametrize("shared_embeddings", [True, False])
def test_a_translators_parameters_are_counted_as_built_shared_embeddings_once(numbers_de_dir, shared_embeddings):
    meta = json.loads((numbers_de_dir / "meta.json").read_text())
    config = TransformerConfig(n_layer=3, n_head=4, n_embd=32, block_size=48, shared_embeddings=shared_embeddings)
    specials = {f"{name}_id": i for name, i in meta["specials"].items()}
    built = Transformer(dataclasses.replace(config, vocab_size=model_vocab_size(meta), **specials))
    assert count_params(config, meta) == sum(p.numel() for p in built.parameters()) == built.num_params()
    assert count_params(config, {"vocab_size": 65}) is None  # running text: that run stops with train.py's error
    assert kv_cache_bytes_per_token(config) == 2 * 3 * 4 * 8 * 4  # the decoder's self-attention, per target token


def test_visualize_draws_cross_attention_and_the_encoders_self_attention(translator, forked):
    result = forked("visualize.py", "attention", "--out_dir=out", "--start=twenty-three", cwd=translator)
    assert result.returncode == 0, result.stderr
    assert "wrote out/cross_attention.png: 1 layers x 2 heads" in result.stdout
    assert "wrote out/encoder_attention.png: 1 layers x 2 heads, 12 x 12 tokens" in result.stdout
    for name in ("cross_attention.png", "encoder_attention.png"):
        assert min(png_size(translator / "out" / name)) > 100
    refused = forked("visualize.py", "attention", "--out_dir=out", cwd=translator)
    assert refused.returncode == 2 and "--start" in refused.stderr
