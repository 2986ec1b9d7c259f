"""learn.py: correct solutions pass every check and train to the reference's loss; the mistakes learners
really make are each caught with the message meant for them; a learner sees their own traceback lines
and none of ours; `start` never overwrites their work."""

import json
import math
import re
import shutil
from pathlib import Path

import pytest

import learn
from conftest import REPO_ROOT, main_error_line, snapshot
from gptkit.checkpoint import load_checkpoint, model_from_checkpoint
from gptkit.exercises import EXERCISES
from gptkit.exercises.harness import run_checks
from gptkit.runlog import read_log

pytestmark = pytest.mark.usefixtures("one_thread")

SOLUTIONS = Path(__file__).parent / "learn_solutions"


def run_learn(capsys, *argv):
    """learn.main(argv) in-process -> (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        learn.main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def mine(tmp_path):
    """A mine/ folder holding a correct solution of every exercise."""
    folder = tmp_path / "mine"
    shutil.copytree(SOLUTIONS, folder)
    return folder


def write(folder, name, old, new):
    """Write solution `name` into folder with `old` replaced by `new` (which must be there to replace)."""
    source = (SOLUTIONS / f"{name}.py").read_text()
    assert old in source, f"{old!r} is not in {name}.py: the table no longer follows the solution"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(source.replace(old, new))
    return folder / f"{name}.py"


# ---------------------------------------------------------------------------------------------
# correct solutions, templates, the list


def test_every_exercise_passes_with_a_correct_solution(capsys, mine):
    for name in EXERCISES:
        code, out, err = run_learn(capsys, "check", name, f"--mine={mine}")
        assert code == 0, out + err
        assert "FAILED" not in out and "checks passed" in out
    code, out, _ = run_learn(capsys, f"--mine={mine}")
    assert code == 0 and out.count("passing (") == len(EXERCISES)
    assert f"all {len(EXERCISES)} pass" in out


def test_every_template_is_not_started_and_names_what_to_write(tmp_path):
    for name, exercise in EXERCISES.items():
        template = REPO_ROOT / "exercises" / f"{name}.py"
        text = template.read_text()
        assert "raise NotImplementedError" in text and f"python3 learn.py check {name}" in text
        report = run_checks(exercise, template)
        assert report.state == "not started", (name, report)
        for what in report.not_written:  # the template's names are those the checks call
            assert what.split(".")[0] in exercise.WRITES


def test_not_started_says_so_in_one_line_and_exits_non_zero(capsys, tmp_path):
    code, out, _ = run_learn(capsys, "start", f"--mine={tmp_path / 'mine'}")
    assert code == 0
    line = main_error_line(capsys, learn, ["check", "attention", f"--mine={tmp_path / 'mine'}"])
    assert "attention is not started" in line and "causal_attention" in line
    line = main_error_line(capsys, learn, ["check", "attention", f"--mine={tmp_path / 'elsewhere'}"])
    assert "does not exist" in line and "python3 learn.py start" in line


def test_a_half_written_exercise_fails_naming_what_is_left(capsys, tmp_path):
    path = write(tmp_path / "mine", "backward", "return dout @ weight, dout.T @ x, dout.sum(0)", "raise NotImplementedError")
    code, out, _ = run_learn(capsys, "check", "backward", f"--mine={path.parent}")
    assert code == 1
    assert "linear_backward is not written yet" in out and "passed  dlogits equals autograd's" in out


def test_the_list_shows_each_state_and_the_next_step(capsys, tmp_path):
    folder = tmp_path / "mine"
    code, out, _ = run_learn(capsys, f"--mine={folder}")
    assert "next: python3 learn.py start" in out
    run_learn(capsys, "start", f"--mine={folder}")
    shutil.copy(SOLUTIONS / "batch.py", folder)
    write(folder, "positions", "pe[:, 0::2] = torch.sin(angles)", "pe[:, 0::2] = torch.cos(angles)")
    code, out, _ = run_learn(capsys, f"--mine={folder}")
    rows = {line.split()[1]: line for line in out.splitlines() if line[:4].strip().isdigit()}
    assert list(rows) == list(EXERCISES)
    assert "passing" in rows["batch"] and "failing" in rows["positions"] and "not started" in rows["attention"]
    assert "next: python3 learn.py check positions" in out


def test_start_never_overwrites_and_says_what_it_kept(capsys, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "attention.py").write_text("# my attention, half written\n")
    code, out, _ = run_learn(capsys, "start", f"--mine={folder}")
    assert code == 0 and "kept 1" in out and "attention" in out.split("kept")[1]
    assert (folder / "attention.py").read_text() == "# my attention, half written\n"
    assert (folder / "positions.py").read_text() == (REPO_ROOT / "exercises" / "positions.py").read_text()
    (folder / "positions.py").write_text("# mine now\n")
    code, out, _ = run_learn(capsys, "start", f"--mine={folder}")
    assert f"kept {len(EXERCISES)}" in out and "copied" not in out
    assert (folder / "positions.py").read_text() == "# mine now\n"


def test_bad_commands_are_one_line_each(capsys, tmp_path):
    assert "did you mean 'attention'" in main_error_line(capsys, learn, ["check", "atention"])
    assert "name the exercise" in main_error_line(capsys, learn, ["check"])
    assert "did you mean 'check'" in main_error_line(capsys, learn, ["chek", "attention"])
    assert "not a part of the model" in main_error_line(capsys, learn, ["train", "sampling"])
    assert "pos_encoding='sinusoidal'" in main_error_line(capsys, learn, ["train", "positions", "--pos_encoding=rope"])
    assert "computes mask='causal' only" in main_error_line(capsys, learn, ["train", "attention", "--mask=none"])
    assert "learn.py names the runs" in main_error_line(capsys, learn, ["train", "attention", "--out_dir=out"])
    assert "a piece of transformer.py's model and this run trains model='gpt'; drop --model" in main_error_line(
        capsys, learn, ["train", "cross_attention", "--model=gpt"])
    code, out, _ = run_learn(capsys, "--help")  # (the docstring it prints first is __main__'s: pytest's here)
    assert code == 0 and "--mine='mine'" in out and "--out_root='out-learn'" in out


def test_a_failed_check_prints_expected_got_and_the_likely_cause(capsys, tmp_path):
    path = write(tmp_path / "mine", "attention", " / math.sqrt(hs)", "")
    code, out, _ = run_learn(capsys, "check", "attention", f"--mine={path.parent}")
    assert code == 1
    assert "FAILED  weights equal step_by_step's softmax (B=1, nh=2, T=7, hs=64)" in out
    assert "expected: [0, 0, 1, 0:6] = [" in out and "got:      [0, 0, 1, 0:6] = [" in out
    assert "likely cause: your scores are 8.0 times the reference's: did you divide by sqrt(head_size)?" in out
    assert "passed  no query gives weight to a key in its future" in out and "14 of 20 checks passed" in out


# ---------------------------------------------------------------------------------------------
# the learner's own traceback, and none of ours


OURS = ("gptkit/", 'learn.py", line', "harness", "Traceback (most recent call last)")  # our frames, by file


def test_a_learners_exception_shows_their_lines_and_none_of_ours(capsys, tmp_path):
    path = write(tmp_path / "mine", "attention", "scores = q @ k.transpose(-2, -1) / math.sqrt(hs)",
                 "scores = q @ k / math.sqrt(hs)  # forgot the transpose")
    code, out, err = run_learn(capsys, "check", "attention", f"--mine={path.parent}")
    assert code == 1
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "forgot the transpose" in text)
    assert f'File "{path}", line {line}, in causal_attention' in out
    assert "scores = q @ k / math.sqrt(hs)" in out and "RuntimeError" in out
    assert not any(ours in out + err for ours in OURS)


@pytest.mark.parametrize("name, old, new, call", [
    ("sampling", "    if temperature == 0:\n        return logits.argmax(dim=-1, keepdim=True)\n", "",
     "sample_next(logits=a float32 tensor of shape (16, 30), temperature=0.0, generator=a Generator)"),
    ("layernorm", "return y + self.bias if self.bias is not None else y", "return y + self.bias",
     "LayerNorm(ndim=16, bias=False)(x=a float32 tensor of shape (2, 3, 16))"),
], ids=["sampling-temperature-0", "layernorm-bias-False"])
def test_a_crash_names_the_check_and_its_inputs_and_what_passed_before(capsys, tmp_path, name, old, new, call):
    """The learner's code raises on one input only (temperature=0, a LayerNorm without bias): the report names
    that call and its inputs, and what came before does not read as if every check passed."""
    path = write(tmp_path / "mine", name, old, new)
    code, out, _ = run_learn(capsys, "check", name, f"--mine={path.parent}")
    ran = out.count("  passed  ") + out.count("  FAILED  ")
    assert code == 1 and ran > 1
    assert f"the checks stopped at check {ran + 1}, calling {call}:" in out
    assert f"crashed on check {ran + 1} ({call}); the {ran} before it passed; fix it" in out


def test_what_passed_before_a_crash_is_counted_in_words():
    assert learn.before_crash(0, 0) == "" and learn.before_crash(1, 1) == "the check before it passed; "
    assert learn.before_crash(11, 12) == "11 of the 12 before it passed; "


def test_a_syntax_error_shows_the_learners_line(capsys, tmp_path):
    path = write(tmp_path / "mine", "loss", "def cross_entropy(logits, targets):", "def cross_entropy(logits, targets:")
    code, out, err = run_learn(capsys, "check", "loss", f"--mine={path.parent}")
    assert code == 1 and f'File "{path}", line' in out and "SyntaxError" in out
    assert "def cross_entropy(logits, targets:" in out
    assert not any(ours in out + err for ours in OURS)


def test_a_learners_exception_in_a_fresh_interpreter(cli, tmp_path):
    path = write(tmp_path / "mine", "layernorm", "mean = x.mean(-1, keepdim=True)", "mean = x.mean(-1, keepdims=Tru)")
    result = cli("learn.py", "check", "layernorm", f"--mine={path.parent}")
    assert result.returncode == 1
    assert f'File "{path}"' in result.stdout and "NameError: name 'Tru' is not defined" in result.stdout
    assert not any(ours in result.stdout + result.stderr for ours in OURS)


# ---------------------------------------------------------------------------------------------
# wrong solutions: (exercise, the correct line, the learner's mistake, the message that must name it)

WRONG = [
    ("batch", "y = torch.stack([data[s + 1:s + 1 + block_size]", "y = torch.stack([data[s:s + block_size]",
     "y equals x"),
    ("batch", "data[s + 1:s + 1 + block_size]", "data[s - 1:s - 1 + block_size]", "y is x shifted to the right"),
    ("batch", "data[s + 1:s + 1 + block_size]", "data[s + 2:s + 2 + block_size]", "y is shifted by two"),
    ("batch", "return x, y", "return y, x", "x and y are swapped"),
    ("batch", "x = torch.stack([data[s:s + block_size]", "x = torch.stack([data[s:s + block_size + 1]",
     "block_size + 1 = 9 positions"),
    ("positions", "pe[:, 0::2] = torch.sin(angles)\n    pe[:, 1::2] = torch.cos(angles)",
     "pe[:, 0::2] = torch.cos(angles)\n    pe[:, 1::2] = torch.sin(angles)", "sin and cos are swapped"),
    ("positions", "two_i = torch.arange(0, d_model, 2, dtype=torch.float32)",
     "two_i = torch.arange(0, d_model // 2, dtype=torch.float32)", "the exponent reads 2i as i"),
    ("positions", "two_i / d_model", "2 * two_i / d_model", "2i is doubled"),
    ("positions", "pe[:, 0::2] = torch.sin(angles)\n    pe[:, 1::2] = torch.cos(angles)",
     "pe = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)", "interleave them"),
    ("positions", "torch.exp(-math.log(10000.0)", "torch.exp(math.log(10000.0)", "divide by it"),
    ("positions", "two_i / d_model)  # (T, d/2)\n    pe = torch.zeros(num_positions, d_model)\n    pe[:, 0::2] = "
                  "torch.sin(angles)\n    pe[:, 1::2] = torch.cos(angles)",
     "torch.arange(d_model) / d_model)  # (T, d)\n    pe = torch.zeros(num_positions, d_model)\n    pe[:, 0::2] = "
     "torch.sin(angles[:, 0::2])\n    pe[:, 1::2] = torch.cos(angles[:, 1::2])", "each column j uses 10000^(j/d_model)"),
    ("positions", "angles = pos * torch.exp(-math.log(10000.0) * two_i / d_model)",
     "angles = pos / 10000 ** (two_i // d_model)", "two_i // d_model is integer division"),
    ("positions", "torch.arange(num_positions, dtype=torch.float32)",
     "torch.arange(1, num_positions + 1, dtype=torch.float32)", "your positions start at 1"),
    ("attention", " / math.sqrt(hs)", "", "your scores are 8.0 times the reference's: did you divide by sqrt(head_size)?"),
    ("attention", " / math.sqrt(hs)", " / hs", "divide by sqrt(head_size), not by head_size"),
    ("attention", " / math.sqrt(hs)", " / math.sqrt(hs) / 2",
     "your scores are 0.5 times the reference's: scores = q @ kᵀ / sqrt(head_size)"),
    ("attention", "torch.tril(torch.ones(T, T, dtype=torch.bool, device=q.device))",
     "torch.tril(torch.ones(T, T, dtype=torch.bool, device=q.device), diagonal=-1)",
     "position 6 cannot see itself: the mask hides the diagonal"),
    ("attention", "torch.tril(", "torch.triu(", "the mask is on the wrong side"),
    ("attention", 'F.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)',
     "F.softmax(scores, dim=-1).masked_fill(~mask, 0.0)", "the mask is applied after the softmax"),
    ("attention", 'float("-inf")), dim=-1)', 'float("-inf")), dim=-2)',
     "your weights sum to 1 over queries, not keys: softmax over the last dimension"),
    ("attention", 'masked_fill(~mask, float("-inf"))', "masked_fill(~mask, 0.0)", "-inf, not 0"),
    ("attention", 'mask = torch.tril(torch.ones(T, T, dtype=torch.bool, device=q.device))\n    weights = F.softmax('
                  'scores.masked_fill(~mask, float("-inf")), dim=-1)',
     'mask = torch.triu(torch.ones(T, T, dtype=torch.bool, device=q.device))\n    weights = F.softmax('
     'scores.masked_fill(~mask, float("-inf")), dim=-2)',
     "two mistakes: the mask is on the wrong side (hide key > query, the upper-right triangle: torch.tril), and "
     "the softmax is over queries, not keys (dim=-1)"),
    ("attention", 'scores.masked_fill(~mask, float("-inf"))', "scores",
     "position 0 attends to position 1, in its future"),
    ("attention", 'weights = F.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)',
     'weights = scores.masked_fill(~mask, float("-inf")).exp()\n    weights = weights / weights.sum(-1, keepdim=True)',
     "exp overflows for large scores"),
    ("attention", "return weights @ v, weights", "return weights.transpose(-2, -1) @ v, weights",
     "you used the transposed weights"),
    ("multihead", "t.view(B, T, self.n_head, hs).transpose(1, 2)", "t.reshape(B, self.n_head, T, hs)",
     "a bare .view(B, n_head, T, hs) mixes positions into heads"),
    ("multihead", "y.transpose(1, 2).contiguous().view(B, T, C)", "y.reshape(B, T, C)", "merge the heads"),
    ("multihead", "return self.c_proj(y)", "return y", "skip the output projection"),
    ("multihead", "q, k, v = self.c_attn(x)", "k, q, v = self.c_attn(x)", "splits as q, k, v, in that order"),
    ("multihead", "is_causal=True", "is_causal=False", "no causal mask"),
    ("multihead", "t.view(B, T, self.n_head, hs).transpose(1, 2)", "t.view(B, T, 1, C).transpose(1, 2)",
     "you attend with one head of size C = 16"),
    ("multihead", "is_causal=True", "is_causal=True, scale=1 / C ** 0.5", "the scores are divided by sqrt(C) = 4.00"),
    ("layernorm", "var = ((x - mean) ** 2).mean(-1, keepdim=True)", "var = x.var(-1, keepdim=True)",
     "the unbiased variance"),
    ("layernorm", "torch.sqrt(var + self.eps)", "(torch.sqrt(var) + self.eps)", "added to the standard deviation"),
    ("layernorm", "torch.sqrt(var + self.eps)", "torch.sqrt(var)", "there is no eps"),
    ("layernorm", "y = self.weight * (x - mean)", "return (x - mean)", "the gain and the bias are not used"),
    ("layernorm", "y = self.weight * (x - mean) / torch.sqrt(var + self.eps)\n        return y + self.bias",
     "y = self.bias * (x - mean) / torch.sqrt(var + self.eps)\n        return y + self.weight",
     "the gain and the bias are swapped"),
    ("layernorm", "mean = x.mean(-1, keepdim=True)\n        var = ((x - mean) ** 2).mean(-1, keepdim=True)",
     "mean = x.mean()\n        var = ((x - mean) ** 2).mean()", "you normalise over the whole tensor"),
    ("layernorm", "mean = x.mean(-1, keepdim=True)\n        var = ((x - mean) ** 2).mean(-1, keepdim=True)",
     "mean = x.mean(0, keepdim=True)\n        var = ((x - mean) ** 2).mean(0, keepdim=True)", "over the batch (dim 0)"),
    ("layernorm", "var = ((x - mean) ** 2).mean(-1, keepdim=True)", "var = (x * x).mean(-1, keepdim=True) - mean ** 2",
     "E[x²] - E[x]²"),
    ("block", "x = x + self.dropout(self.attn(self.ln_1(x)))\n        x = x + self.dropout(self.mlp(self.ln_2(x)))",
     "x = self.dropout(self.attn(self.ln_1(x)))\n        x = self.dropout(self.mlp(self.ln_2(x)))",
     "no residual connections"),
    ("block", "x = x + self.dropout(self.attn(self.ln_1(x)))\n        x = x + self.dropout(self.mlp(self.ln_2(x)))",
     "x = self.ln_1(x + self.dropout(self.attn(x)))\n        x = self.ln_2(x + self.dropout(self.mlp(x)))",
     "post-LN"),
    ("block", "x = x + self.dropout(self.attn(self.ln_1(x)))\n        x = x + self.dropout(self.mlp(self.ln_2(x)))",
     "x = self.dropout(x + self.attn(self.ln_1(x)))\n        x = self.dropout(x + self.mlp(self.ln_2(x)))",
     "the dropout hits the residual stream itself"),
    ("block", "x = x + self.dropout(self.attn(self.ln_1(x)))\n        x = x + self.dropout(self.mlp(self.ln_2(x)))",
     "x = x + self.attn(self.ln_1(x))\n        x = x + self.mlp(self.ln_2(x))", "dropout does nothing in training mode"),
    ("block", "self.mlp(self.ln_2(x))", "self.mlp(self.ln_1(x))", "it has its own, ln_2"),
    ("block", "x = x + self.dropout(self.attn(self.ln_1(x)))\n        x = x + self.dropout(self.mlp(self.ln_2(x)))",
     "x = x + self.dropout(self.attn(self.ln_1(x))) + self.dropout(self.mlp(self.ln_2(x)))",
     "the MLP sees the Block's input"),
    ("loss", "].mean()", "].sum()", "your loss is N = 8 times the reference's: take the mean"),
    ("loss", "return -log_probs", "return log_probs", "your loss is negative"),
    ("loss", "shifted = logits - logits.max(dim=-1, keepdim=True).values", "shifted = logits", "exp overflows"),
    ("loss", "log_probs = shifted - shifted.exp().sum(dim=-1, keepdim=True).log()",
     "log_probs = torch.softmax(logits, dim=-1).log()", "the log-sum-exp trick"),
    ("loss", "log_probs[torch.arange(len(targets)), targets]", "log_probs[:, targets]", "every row at every target"),
    ("loss", "].mean()", "]", "one per position: return their mean"),
    ("loss", "log_probs = shifted - shifted.exp().sum(dim=-1, keepdim=True).log()",
     "log_probs = shifted.exp() / shifted.exp().sum(dim=-1, keepdim=True)", "you take -p(target), not -log p(target)"),
    ("loss", "dim=-1", "dim=0", "you normalise over the positions (dim 0)"),
    ("loss", "log_probs = shifted - shifted.exp().sum(dim=-1, keepdim=True).log()",
     "log_probs = shifted * 1.4426950408889634 - shifted.exp().sum(dim=-1, keepdim=True).log2()",
     "= 1/ln 2 times the reference's: use the natural log"),
    ("backward", "return probs / len(targets)", "return probs", "your gradient is N = 8 times autograd's"),
    ("backward", "    probs[torch.arange(len(targets)), targets] -= 1\n", "", "you forgot the -1 at the target"),
    ("backward", "return probs / len(targets)", "return -probs / len(targets)", "the sign is flipped"),
    ("backward", "torch.softmax(logits, dim=-1)", "torch.softmax(logits, dim=0)", "the softmax is over the vocabulary"),
    ("backward", "dout.T @ x", "x.T @ dout", "the transpose of autograd's"),
    ("backward", "return dout @ weight,", "return dout @ weight.T,", "dx is off by a transpose"),
    ("backward", "dout.sum(0)", "dout.mean(0)", "it is the sum, dout.sum(0)"),
    ("adamw", "m_hat = m / (1 - beta1 ** step)\n    v_hat = v / (1 - beta2 ** step)",
     "m_hat, v_hat = m, v", "no bias correction"),
    ("adamw", "decayed = param * (1 - lr * weight_decay)", "decayed, grad = param, grad + weight_decay * param",
     "Adam with L2"),
    ("adamw", "param * (1 - lr * weight_decay)", "param * (1 - weight_decay)", "not multiplied by lr"),
    ("adamw", "(v_hat.sqrt() + eps)", "(v_hat + eps).sqrt()", "eps is inside the square root"),
    ("adamw", "beta1 ** step)\n    v_hat = v / (1 - beta2 ** step)",
     "beta1 ** (step - 1))\n    v_hat = v / (1 - beta2 ** (step - 1))", "step counts from 1"),
    ("adamw", "(v_hat.sqrt() + eps)", "(v_hat + eps)", "divide by the square root of v_hat"),
    ("adamw", "(1 - beta2) * grad * grad", "(1 - beta2) * grad", "v averages the squared gradient"),
    ("adamw", "beta1 ** step)\n    v_hat = v / (1 - beta2 ** step)",
     "beta1 ** (step + 1))\n    v_hat = v / (1 - beta2 ** (step + 1))", "the bias correction uses t + 1"),
    ("adamw", "decayed = param * (1 - lr * weight_decay)", "decayed = param", "there is no weight decay"),
    ("adamw", "return decayed - lr * m_hat / (v_hat.sqrt() + eps), m, v",
     "return (param - lr * m_hat / (v_hat.sqrt() + eps)) * (1 - lr * weight_decay), m, v",
     "the decay is applied to the updated weight"),
    ("adamw", "m = beta1 * exp_avg + (1 - beta1) * grad", "m = beta1 * grad + (1 - beta1) * exp_avg",
     "beta1 weighs the old average"),
    ("sampling", "torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]",
     "torch.sort(logits, descending=True).values[:, [min(top_k, logits.size(-1) - 1)]]", "top_k=3 kept 4 tokens"),
    ("sampling", "logits = logits / temperature", "logits = logits * temperature", "temperature multiplies the logits"),
    ("sampling", "kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]\n        logits = logits.masked_fill("
                 "logits < kth", "kth = torch.topk(logits, min(top_k, logits.size(-1)), largest=False).values[:, [-1]]\n"
                 "        logits = logits.masked_fill(logits > kth", "top_k kept the 3 smallest logits"),
    ("sampling", 'logits = logits.masked_fill(logits < kth, float("-inf"))',
     'logits.masked_fill(logits < kth, float("-inf"))', "top_k has no effect"),  # the new tensor dropped
    ("sampling", "logits = logits / temperature", "logits = logits", "temperature has no effect"),
    ("sampling", 'masked_fill(logits < kth, float("-inf"))', "masked_fill(logits < kth, 0.0)", "-inf, not 0"),
    ("sampling", "return torch.multinomial(probs, num_samples=1, generator=generator)",
     "return probs.argmax(dim=-1, keepdim=True)", "you always take the most likely token"),
    ("sampling", "num_samples=1, generator=generator)", "num_samples=1)", "with the same generator: draw with"),
    ("kvcache", "return self.keys[layer], self.values[layer]", "return k, v", "update returned only the new keys"),
    ("kvcache", "[layer]", "[0]", "the layers share one cache"),
    ("kvcache", "dim=2)", "dim=1)", "you joined the heads (dim 1)"),
    ("kvcache", "self.pos += n", "self.pos = n", "pos counts positions seen"),
    ("kvcache", "torch.cat([self.keys[layer], k], dim=2)", "torch.cat([k, self.keys[layer]], dim=2)",
     "the new keys come before the old ones"),
    ("kvcache", "logits, _ = model(next_token, kv_cache=cache)", "logits, _ = model(idx, kv_cache=cache)",
     "feed only the newest token"),
    ("kvcache", "logits, _ = model(next_token, kv_cache=cache)",
     "logits, _ = model(next_token, kv_cache=cache)\n            cache.advance(1)", "do not advance it in generate"),
    ("kvcache", "logits, _ = model(next_token, kv_cache=cache)", "logits, _ = model(idx)",
     "a step runs without the cache"),
    ("rmsnorm", "rms = torch.sqrt(", "x = x - x.mean(-1, keepdim=True)\n        rms = torch.sqrt(",
     "you subtract the mean: that is LayerNorm"),
    ("rmsnorm", "torch.sqrt((x * x).mean(-1, keepdim=True) + self.eps)",
     "(torch.sqrt((x * x).mean(-1, keepdim=True)) + self.eps)", "eps is added outside the root"),
    ("rmsnorm", "torch.sqrt((x * x).mean(-1, keepdim=True) + self.eps)", "torch.sqrt((x * x).mean(-1, keepdim=True))",
     "there is no eps"),
    ("rmsnorm", "(x * x).mean(-1, keepdim=True)", "(x * x).sum(-1, keepdim=True)", "the root of the sum of squares"),
    ("rmsnorm", "return self.weight * x / rms", "return x / rms", "the gain is not used"),
    ("rope", "freqs = 1.0 / theta ** (i / head_size)", "freqs = torch.ones_like(i)", "one angle per position"),
    ("rope", "angles = torch.arange(T, dtype=torch.float32)[:, None] * freqs[None, :]",
     "angles = torch.arange(head_size // 2, dtype=torch.float32)[None, :] / theta ** "
     "(2 * torch.arange(T, dtype=torch.float32)[:, None] / head_size)", "the frequency follows the position"),
    ("rope", "theta ** (i / head_size)", "theta ** (i / 2 / head_size)", "the exponent reads 2i as i"),
    ("rope", "return torch.cos(angles), torch.sin(angles)", "return torch.sin(angles), torch.cos(angles)",
     "cos and sin are swapped"),
    ("rope", "q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)",
     "q, k, v = apply_rope(q, cos, sin), apply_rope(k, cos, sin), apply_rope(v, cos, sin)", "you rotate v too"),
    ("rope", 'PAIRING = "half"', 'PAIRING = "interleaved"', "the half pairing, but PAIRING = 'interleaved'"),
    ("rope", "torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)",
     "torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)",
     "the pairing is mixed up: you read the halves"),
    ("rope", "a * cos - b * sin, a * sin + b * cos", "a * cos + b * sin, -a * sin + b * cos", "you rotate the other way"),
    ("swiglu", "gate = self.c_fc(x)\n        return self.c_proj(gate * torch.sigmoid(gate) * self.c_fc2(x))",
     "gate = self.c_fc2(x)\n        return self.c_proj(gate * torch.sigmoid(gate) * self.c_fc(x))",
     "gate and up are swapped, the SiLU on the wrong branch"),
    ("swiglu", "gate = self.c_fc(x)\n        return self.c_proj(gate * torch.sigmoid(gate) * self.c_fc2(x))",
     "h = self.c_fc(x) * self.c_fc2(x)\n        return self.c_proj(h * torch.sigmoid(h))",
     "the activation is on the product"),
    ("swiglu", "gate * torch.sigmoid(gate)", "torch.sigmoid(gate)", "that is GLU's sigmoid"),
    ("swiglu", "gate * torch.sigmoid(gate)", "gate", "there is no activation"),
    ("swiglu", "gate * torch.sigmoid(gate) * self.c_fc2(x)", "gate * torch.sigmoid(gate) + self.c_fc2(x)",
     "the branches are added"),
    ("gqa", "torch.repeat_interleave(x, n_rep, dim=1)", "x.repeat(1, n_rep, 1, 1)",
     "the key heads are repeated in the wrong order"),
    ("gqa", "torch.repeat_interleave(x, n_rep, dim=1)", "torch.repeat_interleave(x, n_rep, dim=2)",
     "you repeat along the positions"),
    ("gqa", "repeat_kv(v, n_rep)", "v.repeat(1, n_rep, 1, 1)", "the keys are repeated in groups but the values in turn"),
    ("gqa", "is_causal=True", "is_causal=False", "no causal mask"),
    ("bpe", "for chunk in regex.findall(SPLIT_PATTERN, text):\n        counts", "for chunk in [text]:\n        counts",
     "the split pattern is forgotten: pairs are counted across the whole text"),
    ("bpe", "            i += 2", "            i += 1", "overlapping pairs merged twice"),
    ("bpe", "for pair in zip(ids, ids[1:]):", "for pair in zip(ids[::2], ids[1::2]):",
     "pairs are counted at every other position only"),
    ("bpe", "pair = max(stats, key=lambda p: (stats[p], -p[0], -p[1]))", "pair = max(stats, key=stats.get)",
     "ties go to the pair counted first"),
    ("bpe", "pair = min(zip(ids, ids[1:]), key=lambda p: merges.get(p, float(\"inf\")))",
     "pair = next((p for p in zip(ids, ids[1:]) if p in merges), (None, None))", "merges applied out of rank order"),
    ("bpe", "for chunk in regex.findall(SPLIT_PATTERN, text):\n        ids", "for chunk in [text]:\n        ids",
     "the split pattern is forgotten at encode"),
    ("bpe", 'return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")',
     'return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)', "each token is decoded on its own"),
    # issue 32's four: the causal mask on the encoder, queries and keys swapped, padding on the wrong axis or not hidden
    ("cross_attention", 'weights = F.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)',
     "causal = torch.ones(T, scores.size(-1), dtype=torch.bool).tril()\n"
     '        weights = F.softmax(scores.masked_fill(~(allowed & causal), float("-inf")), dim=-1)',
     "a causal mask hides the later source tokens"),
    ("cross_attention", "q = self.heads(self.c_q(x))\n        k, v = (self.heads(t) for t in self.c_kv(source)",
     "q = self.heads(self.c_q(source))\n        k, v = (self.heads(t) for t in self.c_kv(x)",
     "the queries come from the source and the keys and values from x"),
    ("cross_attention", "scores = q @ k.transpose(-2, -1)", "scores = k @ q.transpose(-2, -1)", "the scores are k qᵀ"),
    ("cross_attention", "masked_fill(~allowed,", "masked_fill(~allowed.transpose(-1, -2),", "hides padded queries"),
    ("cross_attention", 'weights = F.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)\n        y = weights @ v',
     "y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed.transpose(-1, -2))", "hides padded queries"),
    ("cross_attention", 'scores.masked_fill(~allowed, float("-inf"))', "scores", "padded source tokens are read"),
    ("cross_attention", "masked_fill(~allowed,", "masked_fill(allowed,", "the mask is inverted"),
]


def test_rope_checks_the_pairing_the_learner_names(tmp_path):
    """An interleaved RoPE (RoFormer's, Meta's) passes when PAIRING says so."""
    path = write(tmp_path, "rope", 'PAIRING = "half"', 'PAIRING = "interleaved"')
    source = path.read_text().replace(
        "    half = x.size(-1) // 2\n    a, b = x[..., :half], x[..., half:]\n"
        "    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)",
        "    a, b = x[..., 0::2], x[..., 1::2]\n"
        "    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)")
    path.write_text(source)
    report = run_checks(EXERCISES["rope"], path)
    assert report.state == "passing", report.failed
    path.write_text(source.replace('PAIRING = "interleaved"', 'PAIRING = "neox"'))
    assert "set PAIRING at the top of your file" in run_checks(EXERCISES["rope"], path).failed[0].cause


@pytest.mark.parametrize("name, old, new, message", WRONG, ids=[f"{w[0]}-{i}" for i, w in enumerate(WRONG)])
def test_a_wrong_solution_is_caught_with_the_message_meant_for_it(tmp_path, name, old, new, message):
    report = run_checks(EXERCISES[name], write(tmp_path, name, old, new))
    assert report.state == "failing", report
    causes = [r.cause for r in report.failed if r.cause]
    assert causes and message in causes[0], (causes, report.error)


def test_token_ids_show_as_whole_numbers_and_one_position_is_singular(tmp_path):
    report = run_checks(EXERCISES["batch"], write(tmp_path, "batch", "return x, y", "return y, x"))
    x = report.failed[0]
    assert re.fullmatch(r"\[0, 0:6\] = \[(\d+, ){5}\d+, \.\.\.\]", x.expected), x.expected  # not 10.0000
    names = [r.name for r in run_checks(EXERCISES["positions"], SOLUTIONS / "positions.py").results]
    assert "equals model.sinusoidal_encoding (1 position, d_model=2)" in names
    assert "equals model.sinusoidal_encoding (10 positions, d_model=16)" in names


def test_the_overflow_diagnosis_suggests_what_the_template_allows(tmp_path):
    """The loss template says not to call F.log_softmax; the overflow's likely cause must not tell them to."""
    assert "Do not call F.cross_entropy or\nF.log_softmax" in (REPO_ROOT / "exercises" / "loss.py").read_text()
    path = write(tmp_path, "loss", "shifted = logits - logits.max(dim=-1, keepdim=True).values", "shifted = logits")
    causes = [r.cause for r in run_checks(EXERCISES["loss"], path).failed if r.cause]
    assert causes and all("log-sum-exp" in c and "use F.log_softmax" not in c for c in causes), causes


# ---------------------------------------------------------------------------------------------
# learn.py train: the learner's piece in the model, beside the reference

TINY = ["--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=16", "--batch_size=4", "--max_iters=10",
        "--eval_interval=5", "--eval_full_val=False", "--eval_iters=2", "--threads=1", "--warmup_iters=2",
        "--lr_decay_iters=10"]
# for each part of the model, a mistake that must change what trains
TRAIN_WRONG = {
    "positions": ("pe[:, 0::2] = torch.sin(angles)\n    pe[:, 1::2] = torch.cos(angles)",
                  "pe[:, 0::2] = torch.cos(angles)\n    pe[:, 1::2] = torch.sin(angles)"),
    "attention": ('scores.masked_fill(~mask, float("-inf"))', "scores"),
    "multihead": ("return self.c_proj(y)", "return y"),
    "layernorm": ("mean = x.mean(-1, keepdim=True)\n        var = ((x - mean) ** 2).mean(-1, keepdim=True)",
                  "mean = x.mean(0, keepdim=True)\n        var = ((x - mean) ** 2).mean(0, keepdim=True)"),
    "block": ("x = x + self.dropout(self.mlp(self.ln_2(x)))", "x = self.dropout(self.mlp(self.ln_2(x)))"),
    "loss": ("].mean()", "].sum()"),
    "rmsnorm": ("rms = torch.sqrt(", "x = x - x.mean(-1, keepdim=True)\n        rms = torch.sqrt("),
    "rope": ("F.scaled_dot_product_attention(q, k, v, is_causal=True)", "F.scaled_dot_product_attention(q, k, v)"),
    "swiglu": ("gate * torch.sigmoid(gate) * self.c_fc2(x)", "gate * torch.sigmoid(gate) + self.c_fc2(x)"),
    "gqa": ("is_causal=True", "is_causal=False"),
}


@pytest.fixture(scope="module")
def out_root(tmp_path_factory):
    """One out_root for every training test: the reference runs they share are trained once."""
    return tmp_path_factory.mktemp("out-learn")


def final(run_dir):
    return read_log(run_dir)[-1]


@pytest.mark.parametrize("name", list(TRAIN_WRONG))
def test_train_with_a_correct_piece_reaches_the_reference_loss_and_a_wrong_one_does_not(
        capsys, tmp_path, out_root, char_data_dir, name):
    data_before = snapshot(char_data_dir)
    args = ["train", name, f"--out_root={out_root}", f"--data_dir={char_data_dir}", *TINY]
    code, out, err = run_learn(capsys, *args, f"--mine={SOLUTIONS}")
    assert code == 0, err[-2000:]
    label = EXERCISES[name].TRAIN.label
    # the reference: trained now, or reused from an exercise trained with the same settings before
    said = next(line for line in err.splitlines() if line.startswith(("training the reference", "the reference: reusing")))
    reference_dir = Path(said.split(" into ")[-1] if " into " in said else said.split(" run in ")[1].split(" (")[0])
    mine, reference = final(out_root / name), final(reference_dir)
    assert reference["iter"] == mine["iter"] == 10
    for split in ("train_loss", "val_loss"):  # the same model, trained the same way: equal to float precision
        assert math.isclose(mine[split], reference[split], abs_tol=1e-4), (split, mine, reference)
    assert f"{label}: train {mine['train_loss']:.4f}, val {mine['val_loss']:.4f}; the reference: " in out
    record = json.loads((reference_dir / "experiment.json").read_text())  # experiment.py --reuse reads it too
    model = model_from_checkpoint(load_checkpoint(reference_dir / "ckpt.pt"))
    assert record["params"] == model.num_params(non_embedding=False) and record["seconds"] >= 0
    assert (out_root / f"{name}.png").is_file()

    wrong = write(tmp_path / "wrong", name, *TRAIN_WRONG[name])
    code, out, err = run_learn(capsys, *args, f"--mine={wrong.parent}")
    assert code == 0, err[-2000:]
    assert "reusing the finished run in" in err  # the reference trained above, not again
    assert "note:" in err and "fails" in err  # trained anyway, after saying its checks fail
    assert abs(final(out_root / name)["val_loss"] - reference["val_loss"]) > 1e-3  # the piece really is the learner's
    assert snapshot(char_data_dir) == data_before  # datasets are read, never written


def test_a_learners_exception_in_training_shows_their_lines(capsys, tmp_path, out_root, char_data_dir):
    path = write(tmp_path / "mine", "attention", "    T, hs = q.shape[-2:]\n",
                 "    T, hs = q.shape[-2:]\n    if q.requires_grad:\n        raise RuntimeError(\"only in training\")\n")
    code, out, err = run_learn(capsys, "train", "attention", f"--mine={path.parent}", f"--out_root={tmp_path / 'out'}",
                               f"--data_dir={char_data_dir}", *TINY)
    assert code == 2
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "only in training" in text)
    assert f'File "{path}", line {line}, in causal_attention' in err and "RuntimeError: only in training" in err
    assert err.strip().splitlines()[-1].startswith("error: your attention raised during training (above)")
    assert not any(ours in err for ours in OURS)
    assert not (tmp_path / "out" / "reference-attention").exists()  # it stopped at the learner's run


def test_train_bpe_trains_on_shakespeare_cut_by_the_learners_tokenizer(capsys, tmp_path, monkeypatch):
    """A correct BPE cuts Tiny Shakespeare exactly as the reference does: the same data, the same losses."""
    import numpy as np

    from gptkit.exercises import bpe
    from gptkit.tokenizer import load_tokenizer

    monkeypatch.setattr(bpe, "TRAIN_CHARS", 30_000)
    monkeypatch.setattr(bpe, "TRAIN_VOCAB", 300)
    data_dir = tmp_path / "data"
    code, out, err = run_learn(capsys, "train", "bpe", f"--mine={SOLUTIONS}", f"--out_root={tmp_path / 'out'}",
                               f"--data_dir={data_dir}", *TINY)
    assert code == 0, err[-2000:]
    for split in ("train", "val"):
        mine, reference = (np.fromfile(data_dir / name / f"{split}.bin", dtype=np.uint16)
                           for name in ("learn-bpe", "learn-bpe-reference"))
        assert len(mine) < 30_000 * 0.9 and np.array_equal(mine, reference)
    tokenizer = load_tokenizer(load_checkpoint(tmp_path / "out" / "bpe" / "ckpt.pt")["meta"])  # sample.py decodes
    assert tokenizer.vocab_size == 300 and tokenizer.decode(tokenizer.encode("ROMEO: thou")) == "ROMEO: thou"
    mine, reference = final(tmp_path / "out" / "bpe"), final(tmp_path / "out" / "reference-bpe")
    assert mine["val_loss"] == reference["val_loss"]
    assert f"your BPE: train {mine['train_loss']:.4f}" in out


@pytest.fixture(scope="module")
def numbers_data_dir(tmp_path_factory):
    """A data_dir holding numbers_de's first 200 pairs (prepare.py's own, 0 to 199) as the dataset numbers_de."""
    import prepare

    data_dir = tmp_path_factory.mktemp("numbers")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prepare, "NUMBERS_DE_LIMIT", 200)  # num2words makes 200 pairs, not 10,000
        prepare.prepare_pairs(prepare.numbers_de_pairs(), data_dir / "numbers_de", "char", "num2words, 0 to 199")
    return data_dir


def test_train_cross_attention_trains_the_translator_beside_transformer_pys(capsys, tmp_path, numbers_data_dir):
    """config/translate_numbers_de.py, made tiny: a correct module trains as transformer.py's Attention does, and
    both runs' held-out exact match is said; a module that reads the padding trains otherwise."""
    data_before = snapshot(numbers_data_dir)
    args = ["train", "cross_attention", f"--out_root={tmp_path / 'out'}", f"--data_dir={numbers_data_dir}",
            "--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=32", "--batch_size=8", "--max_iters=4",
            "--eval_interval=4", "--warmup_iters=2", "--threads=1"]
    code, out, err = run_learn(capsys, *args, f"--mine={SOLUTIONS}")
    assert code == 0, err[-2000:]
    assert "training the reference (transformer.py's own)" in err
    mine, reference = final(tmp_path / "out" / "cross_attention"), final(tmp_path / "out" / "reference-cross_attention")
    assert mine["iter"] == reference["iter"] == 4 and 0 <= mine["exact_match"] <= 1 and "exact_match" in reference
    for split in ("train_loss", "val_loss"):
        assert math.isclose(mine[split], reference[split], abs_tol=1e-4), (split, mine, reference)
    assert (f"your cross-attention: train {mine['train_loss']:.4f}, val {mine['val_loss']:.4f}, exact match "
            f"{mine['exact_match']:.1%}; the reference: train {reference['train_loss']:.4f}") in out
    assert (tmp_path / "out" / "cross_attention.png").is_file()
    model = model_from_checkpoint(load_checkpoint(tmp_path / "out" / "reference-cross_attention" / "ckpt.pt"))
    record = json.loads((tmp_path / "out" / "reference-cross_attention" / "experiment.json").read_text())
    assert record["params"] == model.num_params() and record["settings"]["dropout"] == 0.0

    wrong = write(tmp_path / "wrong", "cross_attention", 'scores.masked_fill(~allowed, float("-inf"))', "scores")
    code, out, err = run_learn(capsys, *args, f"--mine={wrong.parent}")
    assert code == 0, err[-2000:]
    assert "reusing the finished run in" in err and "note:" in err
    assert abs(final(tmp_path / "out" / "cross_attention")["val_loss"] - reference["val_loss"]) > 1e-3
    assert snapshot(numbers_data_dir) == data_before
