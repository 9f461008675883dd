"""Hyper-parameters of each step: names, types, bounds and defaults, in one place read by the
trainer, the CLI and the web app.

Two sets of defaults:
- the dataclass defaults are the method's (bracketed numbers in spec/instructgpt-method.md),
  meant for pretrained models of 1.3B-175B parameters: they apply to any real checkpoint;
- a built-in preset (`tiny`, a 2-layer GPT-2 trained from scratch) carries its own
  (`PRESET_DEFAULTS`), found by a sweep recorded in docs/trainer.md, and so do the SFT, RM and
  PPO checkpoints trained from it. With the method's defaults a tiny model learns nothing.

`SFTConfig.for_model(model, params)` resolves them: explicit params > the model's preset
defaults > the dataclass defaults. Every value is validated and coerced on construction, so a
YAML `1e-4` (a string to YAML) or `--set value_lr=1e-4` becomes a float, and a wrong value is
a one-line ValueError naming the field.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

import yaml
from annotated_types import Ge, Gt, Le, Lt
from pydantic import ConfigDict, TypeAdapter, ValidationError

from trainer.meta import model_preset

Count = Annotated[int, Ge(1)]
Positive = Annotated[float, Gt(0)]
NonNegative = Annotated[float, Ge(0)]
Fraction = Annotated[float, Ge(0), Le(1)]


@dataclass
class _Common:
    kind: ClassVar[str] = ""

    seed: int = 0
    cpu: bool = False  # force CPU even when an accelerator is present
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"  # Accelerate autocast
    gradient_accumulation_steps: Count = 1
    max_length: Annotated[int, Ge(8)] = 512  # prompt + response tokens
    # LoRA through peft; adapters are merged before saving, so checkpoints stay plain HF models.
    use_lora: bool = False
    lora_r: Count = 8
    lora_alpha: Count = 16
    lora_dropout: Annotated[float, Ge(0), Lt(1)] = 0.0
    lora_target_modules: list[str] | None = None  # None: peft's default for the architecture

    def __post_init__(self) -> None:
        """Coerce and check every field against its annotated type ("1e-4" -> 1e-4)."""
        for name, adapter in _adapters(type(self)).items():
            value = getattr(self, name)
            try:
                setattr(self, name, adapter.validate_python(value))
            except ValidationError as e:
                error = e.errors()[0]
                raise ValueError(f"{name}: {error['msg']} (got {value!r})") from None

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None) -> Self:
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

    @classmethod
    def for_model(cls, model: str | Path | None, params: Mapping[str, Any] | None = None) -> Self:
        """`params` over the defaults that fit `model` (its preset's, else the method's)."""
        return cls.from_dict({**defaults_for(cls.kind, model), **(params or {})})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)


_ADAPTERS: dict[type, dict[str, TypeAdapter[Any]]] = {}


def _adapters(cls: type) -> dict[str, TypeAdapter[Any]]:
    """One pydantic validator per field of a config class (built once)."""
    if cls not in _ADAPTERS:
        hints = typing.get_type_hints(cls, include_extras=True)
        strict_floats = ConfigDict(allow_inf_nan=False)  # params travel as JSON: no NaN / inf
        _ADAPTERS[cls] = {
            f.name: TypeAdapter(hints[f.name], config=strict_floats)
            for f in dataclasses.fields(cls)
        }
    return _ADAPTERS[cls]


@dataclass
class SFTConfig(_Common):
    kind: ClassVar[str] = "sft"

    epochs: Count = 16  # [16]
    lr: Positive = 1e-5
    batch_size: Count = 8  # demonstrations per device per micro-batch
    warmup_ratio: Fraction = 0.03
    min_lr_ratio: Fraction = 0.0  # floor of the cosine decay, as a fraction of lr
    weight_decay: NonNegative = 0.0
    max_grad_norm: Positive = 1.0
    # [0.2]; None keeps the checkpoint's own setting. Saved checkpoints keep the base model's.
    residual_dropout: Annotated[float, Ge(0), Lt(1)] | None = 0.2
    # Checkpoint selection: by mean RM score of sampled validation responses when a reward
    # model is given (the method), else by validation loss.
    val_samples: Annotated[int, Ge(0)] = 64  # validation prompts sampled for the RM score
    val_max_new_tokens: Count = 64
    val_temperature: Positive = 1.0
    eval_batch_size: Count = 16


@dataclass
class RMConfig(_Common):
    kind: ClassVar[str] = "rm"

    epochs: Count = 1  # one pass: comparisons of a prompt are correlated, more overfits
    lr: Positive = 1e-5
    batch_size: Count = 8  # prompts (each with all K completions) per device per micro-batch
    warmup_ratio: Fraction = 0.03
    min_lr_ratio: Fraction = 0.0
    weight_decay: NonNegative = 0.0
    max_grad_norm: Positive = 1.0
    # Dropout off while training (TRL's disable_dropout): the SFT checkpoint's residual
    # dropout would otherwise add noise to every score difference.
    disable_dropout: bool = True
    eval_batch_size: Count = 8


@dataclass
class PPOConfig(_Common):
    kind: ClassVar[str] = "ppo"

    iterations: Count = 100  # rollout + optimisation rounds
    rollout_batch_size: Count = 64  # prompts per iteration, per device
    minibatch_size: Count = 16
    ppo_epochs: Count = 4  # optimisation passes over each rollout batch
    lr: Positive = 1e-5  # policy
    value_lr: Positive = 1e-5
    lr_schedule: Literal["linear", "constant"] = "linear"  # linear: decay to 0 (TRL, CleanRL)
    weight_decay: NonNegative = 0.0  # AdamW, policy and value
    max_grad_norm: Positive = 1.0  # clipped separately for the policy and the value model
    kl_coef: NonNegative = 0.02  # beta, the per-token KL penalty from the SFT policy
    adaptive_kl: bool = False  # Ziegler et al. 2019 proportional controller
    kl_target: Positive = 6.0
    kl_horizon: Count = 10000
    ptx_coef: NonNegative = 0.0  # gamma; > 0 is PPO-ptx
    ptx_batch_size: Count = 8  # pre-training texts per optimisation step
    gae_gamma: Fraction = 1.0  # discount; the bandit has one reward at the end
    gae_lambda: Fraction = 0.95
    clip_coef: Positive = 0.2
    vf_clip_coef: Positive = 0.2
    vf_coef: NonNegative = 0.5
    ent_coef: NonNegative = 0.0
    whiten_advantages: bool = True
    # subtracted from the score of a response cut at max_new_tokens (no EOS); None: off (TRL)
    missing_eos_penalty: NonNegative | None = None
    temperature: Positive = 1.0
    top_p: Fraction = 1.0  # must be 1: PPO samples the full distribution it optimises
    max_new_tokens: Count = 128
    # iterations between resumable states (OUTPUT/.state); 0: only the final checkpoint
    save_every: Annotated[int, Ge(0)] = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.top_p != 1.0:
            raise ValueError(
                "top_p: PPO samples from the full distribution, whose log-probabilities it "
                f"optimises; top_p must be 1 (got {self.top_p})"
            )


@dataclass
class SampleConfig(_Common):
    kind: ClassVar[str] = "sample"

    temperature: NonNegative = 1.0  # 0 means greedy
    top_p: Annotated[float, Gt(0), Le(1)] = 1.0
    max_new_tokens: Count = 128
    batch_size: Count = 16  # sequences per generate() call


CONFIGS: dict[str, type[_Common]] = {
    c.kind: c for c in (SFTConfig, RMConfig, PPOConfig, SampleConfig)
}

# The built-in presets' own defaults, per step. `tiny` (a 2-layer GPT-2 trained from
# scratch): found by the sweep in docs/trainer.md ("Defaults for the tiny preset") on several
# synthetic preference rules with labels at 73% agreement.
PRESET_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "sft": {
            "epochs": 16,
            "lr": 3e-3,
            "batch_size": 16,
            "warmup_ratio": 0.1,
            "residual_dropout": 0.0,
            "max_length": 256,
            "val_max_new_tokens": 48,
        },
        "rm": {"epochs": 3, "lr": 1e-3, "warmup_ratio": 0.1, "max_length": 256},
        "ppo": {
            "iterations": 40,
            "ppo_epochs": 2,
            "lr": 1e-4,
            "value_lr": 1e-4,
            "kl_coef": 0.05,
            "missing_eos_penalty": 1.0,
            "max_new_tokens": 48,
            "max_length": 256,
        },
        "sample": {"max_new_tokens": 48, "max_length": 256},
    },
}


def defaults_for(kind: str, model: str | Path | None) -> dict[str, Any]:
    """The settings that differ from the method's defaults for `model` (empty for any model
    that does not descend from a built-in preset)."""
    preset = model_preset(model) if model is not None else None
    return dict(PRESET_DEFAULTS.get(preset or "", {}).get(kind, {}))


def describe_defaults(kind: str) -> str:
    """One line for --help and the job form: which defaults apply to which models."""
    cls = CONFIGS[kind]
    fields = {f.name: f.default for f in dataclasses.fields(cls)}
    parts = []
    for preset, by_kind in PRESET_DEFAULTS.items():
        changes = ", ".join(
            f"{k} {v} (method: {fields[k]})"
            for k, v in by_kind.get(kind, {}).items()
            if v != fields[k]
        )
        if changes:
            parts.append(f"the '{preset}' preset and models trained from it use {changes}")
    return "Defaults are the method's (for pretrained models of 1.3B+ parameters); " + (
        "; ".join(parts) + "." if parts else "every model uses them."
    )


def describe_fields(kind: str) -> str:
    """Every field of a step's config with its default, and the presets' where they differ."""
    parts = []
    for f in dataclasses.fields(CONFIGS[kind]):
        presets = [
            f"{name}: {by_kind[kind][f.name]}"
            for name, by_kind in PRESET_DEFAULTS.items()
            if f.name in by_kind.get(kind, {}) and by_kind[kind][f.name] != f.default
        ]
        parts.append(f"{f.name} {f.default}" + (f" ({', '.join(presets)})" if presets else ""))
    return ", ".join(parts) + "."
