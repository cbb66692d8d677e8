"""Policy-gradient (REINFORCE with a normalised-return baseline) agent on CartPole-v1.

    python -m training_scripts.cartpole_pg                       # 1 update = batch_size episodes
    python -m training_scripts.cartpole_pg --batch_size=10 --epochs=80
    python -m training_scripts.cartpole_pg --dry-run
    python -c "from training_scripts.cartpole_pg import load_model; print(load_model('runs/cartpole_pg').predict([[0, 0, 0.05, 0]]))"

`batch_size` is the number of episodes per policy update and `epochs` the number of updates (the seed's
batch-size table sweeps 3, 5, 7, 10, 12, 15). The score is the average reward over the final 10 episodes.
Episodes of one update run in lockstep so the policy is evaluated once per time step for all of them.
Environment seeds derive from (seed, update, episode), so a resumed run replays exactly.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, replace

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from training_scripts.config import TrainConfig, between
from training_scripts.inference import Predictor, load_network, predictor, read_model, read_preprocessing
from training_scripts.loop import (
    Checkpointer, Preempted, RunRecorder, check_resumable, checkpoint_fits, count_flops_per_sample, fingerprint,
    main_entry, mlp, output_locations, resolve_device, rng_state, seed_everything, set_rng_state, write_artifacts,
)


@dataclass(frozen=True)
class Config(TrainConfig):
    epochs: int = 60                        # policy updates
    batch_size: int = 10                    # episodes per update
    learning_rate: float = 1e-2             # Adam step size
    weight_decay: float = 0.0               # AdamW weight decay
    dropout: float = 0.0                    # policy dropout (usually 0)
    hidden_layers: tuple[int, ...] = (64,)  # policy widths
    checkpoint_every: int = 10              # updates between checkpoints
    log_every: int = 1                      # updates between metric lines
    gamma: float = 0.99                     # discount
    max_episode_steps: int = 500            # CartPole-v1 time limit
    device: str = "cpu"                     # tiny policy: CPU is faster than a GPU round trip

    BOUNDS = {**TrainConfig.BOUNDS, "batch_size": between(1, 1024),  # episodes, one environment each
              "gamma": between(0, 1, low_open=True), "max_episode_steps": between(1, 100_000)}


# what its metric lines carry (a campaign target names one); not the shared loop's, which it does not use
METRICS = ("step", "epoch", "loss", "mean_reward", "final10_reward", "samples_per_s", "sec_per_step", "interval_s",
           "train_seconds", "episodes")


ACTIONS = ("left", "right")  # CartPole-v1: push the cart left (0) or right (1)
PREPROCESSING = json.dumps({"workload": "cartpole_pg", "input": "N,4 raw CartPole-v1 observations",
                            "classes": list(ACTIONS)}).encode()


def build_model(config: Config) -> nn.Module:
    return mlp(4, config.hidden_layers, 2, config.dropout)


def load_model(path) -> Predictor:
    """The trained policy (model.pt, or its folder): raw observations (N,4) -> action logits;
    `model.predict(observations)` gives the greedy action, 'left' or 'right'; see inference.py."""
    config, state, folder = read_model(path, Config)
    prep = read_preprocessing(folder, "cartpole_pg", ("classes",))
    return predictor(load_network(build_model, config, state), config, classes=prep["classes"])


def run_episodes(policy: nn.Module, config: Config, update: int) -> tuple[list[torch.Tensor], list[list[float]]]:
    """Play `batch_size` episodes in lockstep; returns per-episode log-probs and rewards."""
    envs = [gym.make("CartPole-v1", max_episode_steps=config.max_episode_steps) for _ in range(config.batch_size)]
    observations = [env.reset(seed=config.seed * 100_003 + update * 1_000 + i)[0] for i, env in enumerate(envs)]
    log_probs: list[list[torch.Tensor]] = [[] for _ in envs]
    rewards: list[list[float]] = [[] for _ in envs]
    active = list(range(len(envs)))
    while active:
        obs = torch.as_tensor(np.stack([observations[i] for i in active]), dtype=torch.float32)
        dist = torch.distributions.Categorical(logits=policy(obs))
        actions = dist.sample()
        chosen = dist.log_prob(actions)
        still_active = []
        for row, i in enumerate(active):
            observations[i], reward, terminated, truncated, _ = envs[i].step(int(actions[row]))
            log_probs[i].append(chosen[row])
            rewards[i].append(float(reward))
            if not (terminated or truncated):
                still_active.append(i)
        active = still_active
    for env in envs:
        env.close()
    return [torch.stack(lp) for lp in log_probs], rewards


def discounted_returns(rewards: list[float], gamma: float) -> torch.Tensor:
    out, running = [], 0.0
    for reward in reversed(rewards):
        running = reward + gamma * running
        out.append(running)
    return torch.tensor(out[::-1], dtype=torch.float32)


def train(config: Config, should_stop=lambda: False, echo: bool = True) -> dict:
    device = resolve_device(config.device)
    output, checkpoint_location = output_locations(config, "cartpole_pg")
    checkpointer = Checkpointer(checkpoint_location)
    seed_everything(config.seed)
    policy = build_model(config)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    flops = count_flops_per_sample(policy, nn.functional.cross_entropy, torch.zeros(64, 4), torch.zeros(64, dtype=torch.long))
    recorder = RunRecorder(echo=echo)
    update, train_seconds, attempts, steps, episode_rewards = 0, 0.0, 1, 0, []
    saved = checkpointer.load(checkpoint_fits(policy, optimizer, ("rng", "update", "train_seconds", "attempts", "steps",
                                                                 "episode_rewards", "history")))
    if saved is not None:
        check_resumable(saved["config"], config, checkpoint_location.uri)
        policy.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        set_rng_state(saved["rng"])
        update, train_seconds, attempts = saved["update"], saved["train_seconds"], saved["attempts"] + 1
        steps, episode_rewards, recorder.history = saved["steps"], saved["episode_rewards"], saved["history"]
        recorder.log(event="resumed", step=update, attempt=attempts)

    def save_checkpoint() -> None:
        checkpointer.save({"model": policy.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng_state(),
                           "update": update, "train_seconds": train_seconds, "attempts": attempts, "steps": steps,
                           "episode_rewards": episode_rewards, "history": recorder.history,
                           "config": dataclasses.asdict(config)})

    limit = min(config.epochs, config.max_steps) if config.max_steps else config.epochs
    while update < limit:
        started = time.perf_counter()
        log_probs, rewards = run_episodes(policy, config, update)
        returns = [discounted_returns(r, config.gamma) for r in rewards]
        flat = torch.cat(returns)
        advantages = (flat - flat.mean()) / (flat.std() + 1e-8)
        loss = -(torch.cat(log_probs) * advantages).sum() / config.batch_size
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        elapsed = time.perf_counter() - started
        env_steps = int(flat.numel())
        update, steps, train_seconds = update + 1, steps + env_steps, train_seconds + elapsed
        episode_rewards += [sum(r) for r in rewards]
        if update % config.log_every == 0:
            recorder.log(step=update, epoch=update, loss=round(loss.item(), 6),
                         mean_reward=round(float(np.mean([sum(r) for r in rewards])), 3),
                         final10_reward=round(float(np.mean(episode_rewards[-10:])), 3),
                         samples_per_s=round(env_steps / elapsed, 2), sec_per_step=round(elapsed, 6),
                         interval_s=round(elapsed, 6),
                         train_seconds=round(train_seconds, 4), episodes=len(episode_rewards))
        if update % config.checkpoint_every == 0:
            save_checkpoint()
        if should_stop():
            recorder.log(event="preempted", step=update)
            save_checkpoint()
            raise Preempted(f"stopped at update {update}; checkpoint saved")
    save_checkpoint()
    final = {"final10_reward": float(np.mean(episode_rewards[-10:])), "episodes": len(episode_rewards),
             "updates": update, "steps": steps, "best_mean_reward": max(
                 (r["mean_reward"] for r in recorder.history if "mean_reward" in r), default=0.0)}
    info = {"workload": "cartpole_pg", "primary_metric": "final10_reward", "higher_is_better": True,
            "train_seconds": train_seconds, "attempts": attempts, "train_flops_per_sample": flops,
            "precision": "fp32", "samples_seen": steps, "fingerprint": fingerprint(device)}
    return write_artifacts(output, config, model_state=policy.state_dict(), recorder=recorder, final=final, info=info,
                           extra={"preprocessing.json": PREPROCESSING})


def run(config: Config, should_stop=lambda: False) -> dict:
    if config.dry_run:
        config = replace(config, epochs=2, batch_size=min(config.batch_size, 3), max_episode_steps=50)
    return train(config, should_stop=should_stop)


if __name__ == "__main__":
    sys.exit(main_entry(Config, run))
