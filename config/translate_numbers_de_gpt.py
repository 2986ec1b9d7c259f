# "Do we need the encoder?" The pairs of config/translate_numbers_de.py learned by a decoder-only GPT
# (model.py): each pair one sequence, source, BOS, target, the loss on the target alone. The same recipe
# and the same batches; 4 layers 70 wide: 241k parameters to the encoder-decoder's 235k. Measured: 82.6%
# held-out exact match at step 400, to the encoder-decoder's 97.8% (docs/experiments.md).
# Prepare the data first: python3 prepare.py numbers_de
# Train it: python3 train.py config/translate_numbers_de_gpt.py
# Train both and compare them: python3 experiment.py config/sweep_encoder.py
out_dir = 'out-translate-numbers-de-gpt'
dataset = 'numbers_de'
model = 'gpt'
device = 'cpu'

n_layer = 4  # as many attention + MLP layers as the encoder-decoder's 2 + 2
n_head = 5  # head size 14
n_embd = 70
block_size = 90  # source, BOS and target together: the longest pair is 47 + 1 + 42 tokens
dropout = 0.1
pos_encoding = 'sinusoidal'  # the encoder-decoder's positions
tie_weights = True  # its shared embeddings

batch_size = 64
max_iters = 400
lr_schedule = 'noam'
noam_factor = 0.25
warmup_iters = 50
beta2 = 0.98
weight_decay = 0.0
label_smoothing = 0.1

eval_interval = 100
eval_full_val = True
eval_iters = 5
log_interval = 10
