# The encoder-decoder of "Attention Is All You Need" (transformer.py) translating English number words
# into German: "four thousand, seven hundred and eleven" -> "viertausendsiebenhundertelf".
# Prepare the data first: python3 prepare.py numbers_de
# Then: python3 sample.py --out_dir=out-translate-numbers-de --start="twenty-three"
# The paper's recipe, scaled down: post-LN, shared embeddings, sinusoidal positions, dropout 0.1, label
# smoothing 0.1, Adam with beta2 0.98 and the noam schedule. Measured figures: docs/translation.md.
out_dir = 'out-translate-numbers-de'
dataset = 'numbers_de'
model = 'transformer'
device = 'cpu'

# 2 encoder + 2 decoder layers, 64 wide: 235k parameters (the paper's base model: 6 + 6 layers, 512 wide)
n_layer = 2
n_head = 4
n_embd = 64
block_size = 48  # the longest source is 47 characters, the longest target 42 (+ BOS)
dropout = 0.1
norm_position = 'post'  # LayerNorm(x + Sublayer(x)), as the paper
shared_embeddings = True

batch_size = 64  # sentence pairs per step, padded to the batch's longest
max_iters = 400  # 25,600 pairs, under 3 epochs of the 9,029 training pairs
lr_schedule = 'noam'  # eq. 3: warm up linearly, then decay as 1/sqrt(step)
noam_factor = 0.25  # the peak, 0.25 * 64^-0.5 * 50^-0.5 = 4.4e-3 at step 50
warmup_iters = 50
beta2 = 0.98
weight_decay = 0.0  # the paper uses none
label_smoothing = 0.1

# evaluations at 0, 200 and 400: best.pt (the lowest val loss) is then the last. With label smoothing the plain
# val loss can rise while exact match still climbs (a run evaluating every 100 steps kept step 300 as best.pt,
# below step 400's exact match). Evaluating does not change what training does.
eval_interval = 200
eval_full_val = True  # the loss over every val pair; exact match, BLEU and chrF over them too
eval_iters = 5  # batches for the train-loss estimate
log_interval = 10
