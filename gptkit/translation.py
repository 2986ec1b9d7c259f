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
from model import stream
from transformer import Transformer, translate


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
            for token in stream(model, idx, model.config.block_size - idx.size(1), temperature=0):  # (B, 1)
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
