# A sweep config for experiment.py: `config` is the training config every run starts from, `vary` makes
# one run per value (a list of them makes the grid), and any other key is a setting for every run.
#   python3 experiment.py config/sweep_mask.py        (runs into out-exp/mask=causal, ...; docs/experiments.md)
config = 'config/lab_char_cpu.py'
vary = 'mask=causal,none,anticausal'
