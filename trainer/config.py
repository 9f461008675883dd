"""Hyper-parameters of each step, with the method's defaults (bracketed numbers in
spec/instructgpt-method.md). Each config is built from a dict (`SFTConfig(**params)` or
`SFTConfig.from_dict`) or from a YAML file (`SFTConfig.from_yaml`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import yaml


@dataclass
class _Common:
    seed: int = 0
    cpu: bool = False  # force CPU even when an accelerator is present
    mixed_precision: str = "no"  # "no" | "fp16" | "bf16" (Accelerate)
    gradient_accumulation_steps: int = 1
    max_length: int = 512  # prompt + response tokens
    # LoRA through peft; adapters are merged before saving, so checkpoints stay plain HF models.
    use_lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: list[str] | None = None  # None: peft's default for the architecture

    @classmethod
    def from_dict(cls, params: dict[str, Any] | None) -> Self:
        """Build from a dict, rejecting unknown keys with a message naming them."""
        params = dict(params or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
        return cls(**params)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Self:
        return cls.from_dict(yaml.safe_load(Path(path).read_text()) or {})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)


@dataclass
class SFTConfig(_Common):
    epochs: int = 16  # [16]
    lr: float = 1e-5
    batch_size: int = 8  # demonstrations per device per micro-batch
    warmup_ratio: float = 0.03
    min_lr_ratio: float = 0.0  # floor of the cosine decay, as a fraction of lr
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    residual_dropout: float | None = 0.2  # [0.2]; None keeps the checkpoint's own setting
    # Checkpoint selection: by mean RM score of sampled validation responses when a reward
    # model is given (the method), else by validation loss.
    val_samples: int = 64  # validation prompts sampled for the RM score each epoch
    val_max_new_tokens: int = 64
    val_temperature: float = 1.0
    eval_batch_size: int = 16


@dataclass
class RMConfig(_Common):
    epochs: int = 1  # one pass: comparisons of a prompt are correlated, more overfits
    lr: float = 1e-5
    batch_size: int = 8  # prompts (each with all K completions) per device per micro-batch
    warmup_ratio: float = 0.03
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_batch_size: int = 8


@dataclass
class PPOConfig(_Common):
    iterations: int = 100  # rollout + optimisation rounds
    rollout_batch_size: int = 64  # prompts per iteration, per device
    minibatch_size: int = 16
    ppo_epochs: int = 4  # optimisation passes over each rollout batch
    lr: float = 1e-5  # policy
    value_lr: float = 1e-5
    max_grad_norm: float = 1.0
    kl_coef: float = 0.02  # beta, the per-token KL penalty from the SFT policy
    adaptive_kl: bool = False  # Ziegler et al. 2019 proportional controller
    kl_target: float = 6.0
    kl_horizon: int = 10000
    ptx_coef: float = 0.0  # gamma; > 0 is PPO-ptx
    ptx_batch_size: int = 8  # pre-training texts per optimisation step
    gae_gamma: float = 1.0  # discount; the bandit has one reward at the end
    gae_lambda: float = 0.95
    clip_coef: float = 0.2
    vf_clip_coef: float = 0.2
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    whiten_advantages: bool = True
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128


@dataclass
class SampleConfig(_Common):
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    max_new_tokens: int = 128
    batch_size: int = 16  # sequences per generate() call
