"""Shell entry points: `train sft|rm|ppo`, `sample` and `score`, configured by flags and/or a
YAML file (`--config`; flags win). The YAML holds config fields and may also name the paths
(model, data, val_data, output, ...). Mounted by app/cli.py; standalone: `python -m trainer`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
import yaml

# torch-heavy modules are imported inside the commands: `prefloop users ...` should not pay
# for loading torch just because the training commands are mounted beside it
from trainer.callbacks import TqdmProgress
from trainer.config import (
    PPOConfig,
    RMConfig,
    SampleConfig,
    SFTConfig,
    _Common,
    describe_defaults,
    describe_fields,
)

train_app = typer.Typer(
    help="Train the method's models: SFT, reward model, PPO / PPO-ptx.", no_args_is_help=True
)

CONFIG = typer.Option(None, "--config", help="YAML file of config fields (and paths).")
SET = typer.Option([], "--set", help="Any config field as KEY=VALUE (YAML value); repeatable.")
SEED = typer.Option(None, help="Random seed.")
CPU = typer.Option(None, "--cpu/--no-cpu", help="Force CPU.")
PRECISION = typer.Option(None, help="Mixed precision: no, fp16 or bf16.")
LORA = typer.Option(None, "--lora/--no-lora", help="Train LoRA adapters (merged on save).")


def _fail(message: str) -> None:
    """Bad input: one line on stderr, exit status 2."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _settings(
    cls: type[_Common],
    config_file: Path | None,
    paths: dict[str, Any],
    flags: dict[str, Any],
    sets: list[str],
    model_key: str,
    saved: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Merge YAML, flags and --set into (config, paths); flags beat the YAML file, and the
    fields left unset take the defaults that fit the model named by `paths[model_key]`.
    `saved` (a resumed run's settings) comes under all of them."""
    try:
        params = yaml.safe_load(config_file.read_text()) or {} if config_file else {}
    except (OSError, yaml.YAMLError) as e:
        _fail(f"--config: cannot read {config_file}: {e}".splitlines()[0])
    if not isinstance(params, dict):
        _fail("--config: the YAML file must hold a mapping of field: value")
    saved = dict(saved or {})
    for key, value in paths.items():
        paths[key] = value if value is not None else params.get(key, saved.get(key))
        params.pop(key, None)
    params = {**saved.get("config", {}), **params}
    params.update({k: v for k, v in flags.items() if v is not None})
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(f"--set: expected KEY=VALUE, got {item!r}")
        params[key.strip().replace("-", "_")] = yaml.safe_load(value)
    try:
        config = cls.for_model(paths.get(model_key), params)
    except (TypeError, ValueError) as e:
        _fail(str(e))
    return config, paths


def _require(paths: dict[str, Any], *keys: str) -> None:
    for key in keys:
        if paths.get(key) is None:
            _fail(f"missing --{key.replace('_', '-')} (or '{key}' in --config)")


def _quiet() -> None:
    """Keep the terminal to our progress bar and results (no per-file loading bars)."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def _run(desc: str, fn: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    _quiet()
    bar = TqdmProgress(desc, keys=("loss", "reward", "kl", "accuracy"))
    try:
        result = fn(progress=bar, **kwargs)
    except ValueError as e:  # bad data or settings, said in one line by the trainer
        bar.close()
        _fail(str(e))
    finally:
        bar.close()
    if os.environ.get("RANK", "0") == "0":  # under `accelerate launch`: print once
        typer.echo(json.dumps(result, indent=2, default=str))
    return result


def _help(summary: str, kind: str) -> str:
    return f"{summary}\n\n{describe_defaults(kind)}"


def _epilog(kind: str) -> str:
    return f"Config fields (--set KEY=VALUE): {describe_fields(kind)}"


@train_app.command(
    "sft", help=_help("Supervised fine-tuning on demonstrations.", "sft"), epilog=_epilog("sft")
)
def sft_command(
    model: str = typer.Option(None, help="Base model: hub ID, local path or 'tiny'."),
    data: Path = typer.Option(None, help="Demonstrations JSONL: {prompt, completion}."),
    val_data: Path = typer.Option(None, help="Validation demonstrations JSONL."),
    output: Path = typer.Option(None, help="Checkpoint directory."),
    reward_model: str = typer.Option(None, help="RM that picks the best epoch on val data."),
    config: Path = CONFIG,
    epochs: int = typer.Option(None),
    lr: float = typer.Option(None),
    batch_size: int = typer.Option(None),
    seed: int = SEED,
    cpu: bool = CPU,
    mixed_precision: str = PRECISION,
    use_lora: bool = LORA,
    set_: list[str] = SET,
) -> None:
    from trainer.sft import train_sft

    cfg, p = _settings(
        SFTConfig,
        config,
        dict(model=model, data=data, val_data=val_data, output=output, reward_model=reward_model),
        dict(
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            cpu=cpu,
            mixed_precision=mixed_precision,
            use_lora=use_lora,
        ),
        set_,
        "model",
    )
    _require(p, "model", "data", "output")
    _run(
        "sft",
        train_sft,
        model=p["model"],
        train=p["data"],
        output_dir=p["output"],
        val=p["val_data"],
        reward_model=p["reward_model"],
        config=cfg,
    )


@train_app.command(
    "rm", help=_help("Train a reward model on K-way rankings.", "rm"), epilog=_epilog("rm")
)
def rm_command(
    model: str = typer.Option(None, help="SFT (or any causal LM) checkpoint to start from."),
    data: Path = typer.Option(None, help="Rankings JSONL: {prompt, completions: [{text, rank}]}"),
    val_data: Path = typer.Option(None, help="Validation rankings JSONL."),
    demos: Path = typer.Option(None, help="Demonstrations JSONL; their mean score becomes 0."),
    output: Path = typer.Option(None, help="Checkpoint directory."),
    config: Path = CONFIG,
    epochs: int = typer.Option(None),
    lr: float = typer.Option(None),
    batch_size: int = typer.Option(None),
    seed: int = SEED,
    cpu: bool = CPU,
    mixed_precision: str = PRECISION,
    use_lora: bool = LORA,
    set_: list[str] = SET,
) -> None:
    from trainer.reward import train_reward_model

    cfg, p = _settings(
        RMConfig,
        config,
        dict(model=model, data=data, val_data=val_data, demos=demos, output=output),
        dict(
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            cpu=cpu,
            mixed_precision=mixed_precision,
            use_lora=use_lora,
        ),
        set_,
        "model",
    )
    _require(p, "model", "data", "output")
    _run(
        "rm",
        train_reward_model,
        model=p["model"],
        train=p["data"],
        output_dir=p["output"],
        val=p["val_data"],
        demonstrations=p["demos"],
        config=cfg,
    )


@train_app.command(
    "ppo",
    help=_help(
        "PPO (PPO-ptx with --pretrain-data and --ptx-coef > 0) against a reward model. "
        "--resume DIR continues a stopped run from its last saved state.",
        "ppo",
    ),
    epilog=_epilog("ppo"),
)
def ppo_command(
    policy: str = typer.Option(None, help="SFT checkpoint (initial policy and KL reference)."),
    reward_model: str = typer.Option(None, help="RM checkpoint (reward and value init)."),
    prompts: Path = typer.Option(None, help="Prompts JSONL: {prompt}."),
    pretrain_data: Path = typer.Option(None, help="Pre-training texts JSONL: {text}."),
    output: Path = typer.Option(None, help="Checkpoint directory."),
    ptx_coef: float = typer.Option(None, help="gamma: pre-training loss weight (PPO-ptx)."),
    kl_coef: float = typer.Option(None, help="beta: per-token KL penalty from the SFT policy."),
    config: Path = CONFIG,
    iterations: int = typer.Option(None),
    lr: float = typer.Option(None),
    seed: int = SEED,
    cpu: bool = CPU,
    mixed_precision: str = PRECISION,
    use_lora: bool = LORA,
    set_: list[str] = SET,
    resume: Path = typer.Option(
        None,
        help="Output directory of a stopped run: continue it from its last saved state "
        "(paths and settings as saved, unless given).",
    ),
) -> None:
    from trainer.ppo import saved_run, train_ppo

    saved: dict[str, Any] = {}
    if resume is not None:
        if output is not None and Path(output) != Path(resume):
            _fail("--resume continues in its own directory: leave out --output")
        try:
            saved = saved_run(resume)
        except ValueError as e:
            _fail(str(e))
        output = resume
        saved["pretrain_data"] = saved.pop("pretrain_texts", None)
    cfg, p = _settings(
        PPOConfig,
        config,
        dict(
            policy=policy,
            reward_model=reward_model,
            prompts=prompts,
            pretrain_data=pretrain_data,
            output=output,
        ),
        dict(
            ptx_coef=ptx_coef,
            kl_coef=kl_coef,
            iterations=iterations,
            lr=lr,
            seed=seed,
            cpu=cpu,
            mixed_precision=mixed_precision,
            use_lora=use_lora,
        ),
        set_,
        "policy",
        saved,
    )
    _require(p, "policy", "reward_model", "prompts", "output")
    _run(
        "ppo",
        train_ppo,
        policy=p["policy"],
        reward_model=p["reward_model"],
        prompts=p["prompts"],
        output_dir=p["output"],
        pretrain_texts=p["pretrain_data"],
        config=cfg,
        resume=resume is not None,
    )


def sample_command(
    model: str = typer.Option(None, help="Checkpoint, hub ID or 'tiny'."),
    prompts: Path = typer.Option(None, help="Prompts JSONL: {prompt}."),
    k: int = typer.Option(None, "--k", help="Completions per prompt."),
    output: Path = typer.Option(None, help="Output JSONL: {prompt, completion, model}."),
    config: Path = CONFIG,
    temperature: float = typer.Option(None),
    top_p: float = typer.Option(None),
    max_new_tokens: int = typer.Option(None),
    batch_size: int = typer.Option(None),
    seed: int = SEED,
    cpu: bool = CPU,
    set_: list[str] = SET,
) -> None:
    """Sample K completions per prompt (e.g. for new ranking tasks)."""
    from trainer.data import prompts as read_prompts
    from trainer.data import write_jsonl
    from trainer.sample import sample_completions

    cfg, p = _settings(
        SampleConfig,
        config,
        dict(model=model, prompts=prompts, k=k, output=output),
        dict(
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            seed=seed,
            cpu=cpu,
        ),
        set_,
        "model",
    )
    _require(p, "model", "prompts", "k", "output")
    _quiet()
    bar = TqdmProgress("sample")
    try:
        records = sample_completions(p["model"], read_prompts(p["prompts"]), int(p["k"]), cfg, bar)
    finally:
        bar.close()
    write_jsonl(p["output"], records)
    typer.echo(f"wrote {len(records)} completions to {p['output']}")


def score_command(
    reward_model: str = typer.Option(None, help="RM checkpoint."),
    input: Path = typer.Option(None, "--input", help="JSONL of {prompt, completion}."),
    output: Path = typer.Option(None, help="JSONL with a `score` added (RM bias applied)."),
    batch_size: int = typer.Option(16),
    cpu: bool = CPU,
) -> None:
    """Score (prompt, completion) records with a reward model."""
    from trainer.data import write_jsonl
    from trainer.score import score_records

    if reward_model is None or input is None or output is None:
        _fail("--reward-model, --input and --output are required")
    _quiet()
    config = SampleConfig(cpu=bool(cpu))
    records = score_records(reward_model, input, batch_size=batch_size, config=config)
    write_jsonl(output, records)
    typer.echo(f"wrote {len(records)} scored records to {output}")


app = typer.Typer(
    help="prefloop trainer: SFT, reward model, PPO, sampling and scoring.", no_args_is_help=True
)
app.add_typer(train_app, name="train")
app.command("sample")(sample_command)
app.command("score")(score_command)
