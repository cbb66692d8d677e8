"""A plain PyTorch training script that knows nothing of trainfleet but its two folders.

    python train.py --batch_size=64 --lr=0.05 --epochs=8
Contract: hyperparameters arrive as --key=value; the model goes to $TRAINFLEET_OUTPUT_DIR; a checkpoint
in $TRAINFLEET_CHECKPOINT_DIR is resumed from; each JSON line printed is a metric record.
"""
import argparse
import json
import os
import signal
import sys

import torch
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--batch_size", type=int, default=64)
parser.add_argument("--lr", type=float, default=0.05)
parser.add_argument("--epochs", type=int, default=8)
args = parser.parse_args()
out = os.environ.get("TRAINFLEET_OUTPUT_DIR", "out")
ckpt_dir = os.environ.get("TRAINFLEET_CHECKPOINT_DIR", "checkpoints")
os.makedirs(out, exist_ok=True)
os.makedirs(ckpt_dir, exist_ok=True)
ckpt = os.path.join(ckpt_dir, "last.pt")
signal.signal(signal.SIGTERM, lambda *_: sys.exit(75))  # interrupted: the last epoch's checkpoint stands

torch.manual_seed(0)
x = torch.randn(4096, 16)
y = (x[:, :4].sum(dim=1) > 0).long()  # a separable toy task
model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 2))
optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
start, step = 0, 0
if os.path.exists(ckpt):
    state = torch.load(ckpt, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    start, step = state["epoch"] + 1, state["step"]
for epoch in range(start, args.epochs):
    for i in torch.randperm(3072, generator=torch.Generator().manual_seed(epoch)).split(args.batch_size):
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
    with torch.no_grad():
        accuracy = (model(x[3072:]).argmax(1) == y[3072:]).float().mean().item()
    print(json.dumps({"epoch": epoch, "step": step, "samples": step * args.batch_size, "loss": loss.item(),
                      "val_accuracy": accuracy}), flush=True)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch, "step": step}, ckpt)
torch.save(model.state_dict(), os.path.join(out, "model.pt"))
