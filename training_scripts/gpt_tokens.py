"""A nanoGPT-sized decoder-only transformer on a byte-level token stream: tokens/s and MFU.

    python -m training_scripts.gpt_tokens                       # tiny-shakespeare (downloaded once, SHA-256 checked)
    python -m training_scripts.gpt_tokens --data=synthetic      # offline: a synthetic token stream
    python -m training_scripts.gpt_tokens --data=corpus.txt     # any text file, as UTF-8 bytes
    python -m training_scripts.gpt_tokens --dry-run             # CI smoke test (a tiny model, 3 steps)
    python -m training_scripts.gpt_tokens --data=synthetic --n_layer=12 --n_head=12 --n_embd=768 \\
        --block_size=1024 --batch_size=16 --vocab_size=50304 --amp --compile   # GPT-2 small, for MFU on a GPU

The model is nanoGPT's (karpathy/nanoGPT model.py): learned position embeddings, pre-LayerNorm blocks of
causal self-attention (scaled_dot_product_attention) and a 4x GELU MLP, no biases, the token embedding
tied to the output head; the defaults are its shakespeare_char configuration (6 layers, 6 heads, 384
wide, 256-token context, dropout 0.2, AdamW 1e-3 with betas 0.9/0.99, weight decay 0.1 on matrices,
warm-up then cosine decay to a tenth). Tokens are bytes (vocab 256), so any text works and no vocabulary
has to travel with the model. A sample is one window of `block_size` tokens (windows start every
`window_stride` tokens); the last tenth of the stream is the validation set.

FLOPs are counted as in nanoGPT's estimate_mfu (from the PaLM paper): per token 6N + 12 L H Q T, with N
the parameters without the position embedding, L layers, H heads, Q head size, T the context. Every
metric line carries tokens_per_s, and mfu when the peak of the precision in use is known
(TRAINFLEET_PEAK_TFLOPS, set by the agent from the catalog); without a peak there is no MFU.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from training_scripts.config import ConfigError, TrainConfig, between
from training_scripts.inference import Predictor, load_network, predictor, read_model, read_preprocessing
from training_scripts.loop import LOOP_METRICS, SupervisedTask, TensorData, main_entry, run_supervised, seed_everything

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
# SHA-256 of input.txt at karpathy/char-rnn 6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e (1,115,394 bytes)
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


@dataclass(frozen=True)
class Config(TrainConfig):
    epochs: int = 40                 # passes over the training windows (about 5,000 steps on tiny-shakespeare)
    batch_size: int = 64             # sequences per step (over all GPUs)
    learning_rate: float = 1e-3      # peak AdamW step size
    weight_decay: float = 0.1        # AdamW weight decay (matrices and embeddings only)
    dropout: float = 0.2             # attention, residual and embedding dropout
    n_layer: int = 6                 # transformer blocks
    n_head: int = 6                  # attention heads
    n_embd: int = 384                # model width
    block_size: int = 256            # context length, tokens per sample
    vocab_size: int = 256            # bytes; larger (e.g. 50304) only for synthetic data
    window_stride: int = 128         # tokens between the starts of consecutive training windows
    warmup_steps: int = 100          # linear learning-rate warm-up
    min_lr_ratio: float = 0.1        # cosine decay ends at this fraction of learning_rate
    synthetic_tokens: int = 400_000  # length of the synthetic stream when the data is synthetic
    checkpoint_every: int = 250      # steps between checkpoints
    log_every: int = 20              # steps between metric lines

    BOUNDS = {**TrainConfig.BOUNDS, "n_layer": between(1, 256), "n_head": between(1, 1024),
              "n_embd": between(1, 65_536), "block_size": between(1, 1 << 17), "vocab_size": between(2, 1 << 20),
              "window_stride": between(1, 1 << 20), "warmup_steps": between(0, 10**9),
              "min_lr_ratio": between(0, 1), "synthetic_tokens": between(1, 10**9)}


METRICS = (*LOOP_METRICS, "tokens_per_s", "val_loss", "val_bits_per_token")  # what its metric lines carry


# ----------------------------------------------------------------------------- model (nanoGPT)
class CausalSelfAttention(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.n_head, self.dropout = config.n_head, config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (part.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
                   for part in self.c_attn(x).split(c, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c)))


class Block(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=False)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=False)
        self.mlp = nn.Sequential(nn.Linear(config.n_embd, 4 * config.n_embd, bias=False), nn.GELU(),
                                 nn.Linear(4 * config.n_embd, config.n_embd, bias=False), nn.Dropout(config.dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.block_size = config.block_size
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=False)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
        for block in self.blocks:  # GPT-2's scaled init of the residual projections
            for proj in (block.attn.c_proj, block.mlp[2]):
                nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        if t > self.block_size:
            raise ValueError(f"sequence of {t} tokens is longer than the context ({self.block_size})")
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(t, device=idx.device)))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def build_model(config: Config) -> nn.Module:
    return GPT(config)


def non_embedding_params(model: GPT) -> int:
    """nanoGPT's N: every parameter once (the tied head counts once, as wte) except the position embedding."""
    return sum(p.numel() for p in model.parameters()) - model.wpe.weight.numel()


def flops_per_token(config: Config, n_params: int) -> float:
    """nanoGPT's estimate_mfu: 6N for the weights' forward and backward, 12 L H Q T for attention."""
    head_size = config.n_embd // config.n_head
    return 6.0 * n_params + 12.0 * config.n_layer * config.n_head * head_size * config.block_size


# ----------------------------------------------------------------------------- data
def cache_dir() -> Path:
    return Path(os.environ.get("TRAINFLEET_DATA_CACHE") or Path.home() / ".cache" / "trainfleet")


def fetch_text(url: str = SHAKESPEARE_URL, sha256: str = SHAKESPEARE_SHA256, timeout: float = 60.0) -> bytes | None:
    """tiny-shakespeare from the cache or the network, checked against its SHA-256; None when offline."""
    target = cache_dir() / "tinyshakespeare" / "input.txt"
    if target.is_file():
        data = target.read_bytes()
        if hashlib.sha256(data).hexdigest() == sha256:
            return data
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # nosec B310  # SHAKESPEARE_URL (https), its SHA256 checked
            data = response.read(64 << 20)
    except urllib.error.HTTPError as error:  # reachable, but not there: not a reason to train on noise
        raise ConfigError(f"{url}: HTTP {error.code} downloading tiny-shakespeare") from None
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        print(f"warning: cannot download tiny-shakespeare ({getattr(error, 'reason', error)}): using synthetic tokens",
              file=sys.stderr, flush=True)
        return None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ConfigError(f"{url}: the download's SHA-256 is not the pinned {sha256}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)
    return data


def synthetic_tokens(length: int, vocab: int, seed: int) -> np.ndarray:
    """A token stream with structure to learn: a random sparse first-order Markov chain (each token has
    a few likely successors), so the loss can fall well below log(vocab)."""
    rng = np.random.default_rng(seed)
    successors = rng.integers(0, vocab, (vocab, 4))
    choice = rng.choice(4, size=length, p=[0.6, 0.25, 0.1, 0.05])
    noise = rng.random(length) < 0.05
    random_tokens = rng.integers(0, vocab, length)
    out = np.empty(length, dtype=np.int64)
    out[0] = 0
    for i in range(1, length):  # sequential by nature; 400k steps take well under a second or two
        out[i] = random_tokens[i] if noise[i] else successors[out[i - 1], choice[i]]
    return out


def load_stream(config: Config) -> tuple[np.ndarray, str]:
    """The token stream and where it came from: "tinyshakespeare", a file name, or "synthetic"."""
    if config.data == "synthetic" or (config.dry_run and not config.data):
        length = 4096 if config.dry_run else config.synthetic_tokens
        return synthetic_tokens(length, config.vocab_size, seed=1234), "synthetic"
    if config.data:
        try:
            text = Path(config.data).read_bytes()
        except OSError as error:
            raise ConfigError(f"--data={config.data}: cannot read ({error.strerror or error})") from None
        source = Path(config.data).name
    else:
        text = fetch_text()
        if text is None:
            return synthetic_tokens(config.synthetic_tokens, config.vocab_size, seed=1234), "synthetic"
        source = "tinyshakespeare"
    if config.vocab_size < 256:
        raise ConfigError(f"--vocab_size={config.vocab_size}: text is read as bytes, so it must be at least 256")
    return np.frombuffer(text, dtype=np.uint8).astype(np.int64), source


def windows(stream: np.ndarray, block: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets: windows of `block` tokens starting every `stride` tokens."""
    starts = np.arange(0, len(stream) - block - 1 + 1, stride)
    index = starts[:, None] + np.arange(block)[None, :]
    return torch.from_numpy(stream[index]), torch.from_numpy(stream[index + 1])


# ----------------------------------------------------------------------------- training
def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))


EVAL_LOGITS = 1 << 26  # logits per evaluation chunk: 256 MiB in fp32 (plus the model's own half-precision copy)


def eval_chunk(block_size: int, vocab_size: int, budget: int = EVAL_LOGITS) -> int:
    """Sequences per evaluation chunk so that one chunk's logits stay within `budget` values: 1024 sequences
    for the byte-level default (256 x 256), 1 for GPT-2's 1024 x 50304 (64 sequences there would need ~33 GB)."""
    return max(1, budget // (block_size * vocab_size))


def evaluate(model: nn.Module, data: TensorData) -> dict:
    model.eval()
    total, n = 0.0, data.val_x.shape[0]
    chunk = eval_chunk(data.val_x.shape[1], model.lm_head.out_features)
    with torch.no_grad():
        for start in range(0, n, chunk):
            x, y = data.val_x[start:start + chunk], data.val_y[start:start + chunk]
            total += lm_loss(model(x), y).item() * x.shape[0]
    loss = total / n
    return {"val_loss": loss, "val_bits_per_token": loss / math.log(2)}


def make_optimizer(config: Config):
    """AdamW as nanoGPT sets it up: decay on matrices and embeddings, none on LayerNorm weights."""
    def build(model: nn.Module) -> torch.optim.Optimizer:
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        fused = next(model.parameters()).device.type == "cuda"
        return torch.optim.AdamW(groups, lr=config.learning_rate, betas=(0.9, 0.99), fused=fused)
    return build


def warmup_cosine(config: Config, steps_per_epoch: int):
    """Learning-rate multiplier at a (fractional) epoch: linear warm-up over `warmup_steps`, then cosine
    decay to `min_lr_ratio` at the end of `epochs`."""
    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(config.warmup_steps, total)

    def schedule(at_epoch: float) -> float:
        step = at_epoch * steps_per_epoch
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return schedule


def check(config: Config) -> None:
    """What BOUNDS cannot say field by field."""
    if config.n_embd % config.n_head:
        raise ConfigError(f"--n_embd={config.n_embd} must be a multiple of --n_head={config.n_head}")


def build_task(config: Config) -> SupervisedTask:
    check(config)
    stream, source = load_stream(config)
    split = int(len(stream) * 0.9)
    if split < config.block_size + 2 or len(stream) - split < config.block_size + 2:
        raise ConfigError(f"{source}: {len(stream)} tokens are too few for --block_size={config.block_size}")
    train_x, train_y = windows(stream[:split], config.block_size, config.window_stride)
    val_x, val_y = windows(stream[split:], config.block_size, config.block_size)
    data = TensorData(train_x, train_y, val_x, val_y)
    seed_everything(config.seed)
    model = build_model(config)
    n_params = non_embedding_params(model)
    steps_per_epoch = train_x.shape[0] // min(config.batch_size, train_x.shape[0])  # the loop drops a partial batch
    preprocessing = json.dumps({"workload": "gpt_tokens", "input": "N,T token ids (bytes of UTF-8 text)",
                                "tokens": "bytes", "vocab_size": config.vocab_size, "data": source}).encode()
    return SupervisedTask(
        name="gpt_tokens", model=model, data=data, loss_fn=lm_loss, evaluate=evaluate,
        primary_metric="val_loss", higher_is_better=False,
        optimizer=make_optimizer(config), lr_schedule=warmup_cosine(config, steps_per_epoch),
        flops_per_sample=flops_per_token(config, n_params) * config.block_size,
        tokens_per_sample=config.block_size,
        info={"data": source, "parameters": n_params, "flops_per_token": flops_per_token(config, n_params)},
        extra_artifacts=lambda m, d: {"preprocessing.json": preprocessing},
    )


def run(config: Config, should_stop=lambda: False) -> dict:
    if config.dry_run:  # a tiny transformer over a short synthetic stream: affordable on a CI CPU
        config = replace(config, n_layer=min(config.n_layer, 2), n_head=2, n_embd=min(config.n_embd, 32),
                         block_size=min(config.block_size, 32), batch_size=min(config.batch_size, 8))
    return run_supervised(config, build_task, should_stop)


class AsTokens(nn.Module):
    """Lists, numpy arrays or tensors of token ids -> a LongTensor N,T on the model's device."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("anchor", torch.empty(0), persistent=False)

    def forward(self, x) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.long, device=self.anchor.device)
        return x.unsqueeze(0) if x.dim() == 1 else x


def load_model(path) -> Predictor:
    """A trained model (model.pt, or its folder, with preprocessing.json beside it) that takes token ids
    (bytes of text; N,T or T) and returns next-token logits N,T,vocab; see inference.py."""
    config, state, folder = read_model(path, Config)
    read_preprocessing(folder, "gpt_tokens", ("vocab_size",))
    return predictor(load_network(build_model, config, state), config, preprocess=AsTokens())


if __name__ == "__main__":
    sys.exit(main_entry(Config, run))
