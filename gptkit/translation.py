"""Translating held-out pairs and scoring the translations: exact match, BLEU and chrF (sacrebleu).

Two kinds of model translate here, both greedily until EOS: transformer.py's encoder-decoder (a padded
batch of sources through transformer.translate) and a decoder-only GPT trained on the same pairs as
source, BOS, target (model.py's stream continues each source after its BOS; sources of one length
share a batch, since a GPT has no padding mask).

BLEU counts matching word n-grams up to 4 (Papineni et al. 2002), so a one-word translation (every
German number is one word) scores 0 even when right: for a char-level dataset it counts character
n-grams instead (sacrebleu's tokenize="char"). chrF (Popovic 2015) is the F-score of character
n-grams either way. Exact match is the share of translations identical to the reference.
"""

import itertools

import torch

from gptkit.errors import UserError
from gptkit.tokenizer import load_tokenizer
from gptkit.decode import SlidingDecoder
from model import stream
from transformer import Transformer, TranslationDecoder, translate


def pad_rows(rows, pad_id, device):
    """Lists of ids -> (B, L) padded with pad_id at the end."""
    L = max(map(len, rows))
    return torch.tensor([row + [pad_id] * (L - len(row)) for row in rows], dtype=torch.long, device=device)


@torch.no_grad()
def greedy_translations(model, sources, specials, batch_size=256):
    """The greedy translation (ids, without BOS and EOS) of each source (a list of ids), in order."""
    device = next(model.parameters()).device
    if isinstance(model, Transformer):
        return [hyp for i in range(0, len(sources), batch_size)
                for hyp in translate(model, pad_rows(sources[i:i + batch_size], specials["pad"], device))]
    bos, eos = specials["bos"], specials["eos"]
    out = [None] * len(sources)
    by_length = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    for _, same in itertools.groupby(by_length, key=lambda i: len(sources[i])):
        same = list(same)
        for chunk in (same[i:i + batch_size] for i in range(0, len(same), batch_size)):
            idx = torch.tensor([sources[i] + [bos] for i in chunk], device=device)  # (B, L): source, BOS
            done, tokens = torch.zeros(len(chunk), dtype=torch.bool, device=device), []
            max_new = model.config.block_size - idx.size(1)
            for token in stream(model, idx, max_new, temperature=0, vocab_limit=eos + 1):  # (B, 1): text or EOS
                tokens.append(token)
                done |= token[:, 0] == eos
                if done.all():
                    break
            rows = torch.cat(tokens, dim=1).tolist() if tokens else [[] for _ in chunk]
            for i, row in zip(chunk, rows):
                out[i] = row[:row.index(eos)] if eos in row else row
    return out


def translation_scores(hypotheses, references, char_level):
    """{"exact_match": share identical, "bleu": corpus BLEU, "chrf": corpus chrF} of texts against references."""
    try:
        import sacrebleu
    except ImportError:
        raise UserError("scoring translations needs sacrebleu: pip install sacrebleu") from None
    exact = sum(h == r for h, r in zip(hypotheses, references)) / max(len(references), 1)
    bleu = sacrebleu.corpus_bleu(hypotheses, [references], tokenize="char" if char_level else "13a")
    chrf = sacrebleu.corpus_chrf(hypotheses, [references])
    return {"exact_match": exact, "bleu": bleu.score, "chrf": chrf.score}


def evaluate_translations(model, data, tokenizer, split="val", max_pairs=None):
    """Translate the split's pairs (the first max_pairs) greedily and score them against their targets:
    translation_scores' dict, plus "examples", the first three (source, translation, reference) texts."""
    pairs = data.pairs[split][:max_pairs]
    was_training = model.training
    model.eval()
    hypotheses = [tokenizer.decode(ids) for ids in greedy_translations(model, [s for s, _ in pairs], data.specials)]
    model.train(was_training)
    references = [tokenizer.decode(t) for _, t in pairs]
    scores = translation_scores(hypotheses, references, tokenizer.name == "char")
    scores["examples"] = [(tokenizer.decode(s), h, r) for (s, _), h, r in zip(pairs[:3], hypotheses, references)]
    return scores


class EvalTranslations:
    """train.py's evaluation of a model trained on sentence pairs: at each evaluation, every held-out (val) pair
    translated greedily and scored, beside the loss (log.jsonl's exact_match, bleu and chrf)."""

    def __init__(self, data):
        self.data, self.tokenizer = data, load_tokenizer(data.meta)

    def write(self, model, ctx):
        """(the scores for log.jsonl, a line saying them with the first held-out example)."""
        with ctx:
            scores = evaluate_translations(model, self.data, self.tokenizer)
        source, translation, reference = scores.pop("examples")[0]
        line = (f"held-out pairs: exact match {scores['exact_match']:.1%}, BLEU {scores['bleu']:.1f}, chrF "
                f"{scores['chrf']:.1f}; {source!r} -> {translation!r} (reference {reference!r})")
        return {key: round(value, 4) for key, value in scores.items()}, line


def source_ids(model, tokenizer, text):
    """The token ids of a sentence to translate; a UserError when it is empty or longer than the model's positions
    (a decoder-only model needs room after it for BOS and at least one token of the translation)."""
    ids = tokenizer.encode(text)
    room = model.config.block_size - (0 if isinstance(model, Transformer) else 2)
    if not ids:
        raise UserError("the sentence to translate is empty; pass it with --start")
    if len(ids) > room:
        raise UserError(f"the sentence to translate is {len(ids)} tokens long, more than the {room} this model has "
                        f"positions for (block_size={model.config.block_size}); shorten it")
    return ids


def translation_decoder(model, ids, specials, use_cache=True):
    """A decoder (model.Decoder's interface, with keep for beam search) whose context grows into the translation of
    one source: transformer.py's TranslationDecoder, or for a decoder-only GPT the source and BOS continued."""
    device = next(model.parameters()).device
    if isinstance(model, Transformer):
        return TranslationDecoder(model, torch.tensor([ids], device=device), use_cache)
    return SlidingDecoder(model, torch.tensor([ids + [specials["bos"]]], device=device), use_cache)
