# "Do we need the encoder?" The encoder-decoder (config/translate_numbers_de.py) against a decoder-only GPT of
# about as many parameters (config/translate_numbers_de_gpt.py) on the same pairs, each config as it is:
#   python3 prepare.py numbers_de
#   python3 experiment.py config/sweep_encoder.py
# runs into out-exp/translate_numbers_de and out-exp/translate_numbers_de_gpt; table and plot in out-exp/config.md
# and config.png: losses, held-out exact match, BLEU, chrF, tokens/s, parameters (docs/experiments.md).
vary = 'config=config/translate_numbers_de.py,config/translate_numbers_de_gpt.py'
# both evaluate at 0, 100, ..., 400, so their curves share points (the translator's own config evaluates every
# 200 steps to keep its best.pt; here best.pt is not what is compared)
eval_interval = 100
