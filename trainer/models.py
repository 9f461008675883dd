"""Loading and saving models: any Hugging Face causal LM by hub ID or local path, the offline
`tiny` preset, reward/value models (backbone + scalar head), Accelerate, LoRA, prefloop.json."""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from trainer.config import _Common
from trainer.meta import META_FILE, model_preset, read_prefloop_meta, write_prefloop_meta
from trainer.tiny_corpus import TINY_CORPUS

if TYPE_CHECKING:
    from peft import PeftModel

__all__ = ["META_FILE", "read_prefloop_meta", "write_prefloop_meta"]  # and the functions below

TINY_VERSION = 2  # bump when the preset changes, so stale caches are rebuilt
# architectures' names for residual dropout (Llama, Qwen2, Mistral have none)
RESIDUAL_DROPOUT_NAMES = ("resid_pdrop", "hidden_dropout", "hidden_dropout_prob", "dropout")
RM_PAD_TOKEN = "<|pad|>"

# ---------------------------------------------------------------- the tiny preset


def build_tiny(output_dir: str | Path | None = None, seed: int = 0) -> Path:
    """Build (or reuse) the offline `tiny` preset: a 2-layer GPT-2 and a byte-level BPE
    tokenizer trained on a built-in corpus. Deterministic for a given seed."""
    out = Path(output_dir) if output_dir is not None else _tiny_cache_dir() / f"seed{seed}"
    meta = read_prefloop_meta(out)
    if meta.get("tiny_version") == TINY_VERSION and meta.get("seed") == seed:
        return out

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    bpe_trainer = trainers.BpeTrainer(
        vocab_size=768,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TINY_CORPUS.split("\n"), trainer=bpe_trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|pad|>",
    )
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=512,
        n_embd=64,
        n_layer=2,
        n_head=4,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    _set_generation_tokens(model, tokenizer)

    # Build beside the target and rename, so a concurrent reader never sees half a model.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    write_prefloop_meta(
        tmp,
        {
            "kind": "base",
            "name": "tiny",
            "preset": "tiny",
            "tiny_version": TINY_VERSION,
            "seed": seed,
            "parents": [],
        },
    )
    shutil.rmtree(out, ignore_errors=True)
    try:
        tmp.rename(out)
    except OSError:  # another process won the race; theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _tiny_cache_dir() -> Path:
    root = os.environ.get("PREFLOOP_TRAINER_CACHE")
    return Path(root) / "tiny" if root else Path.home() / ".cache" / "prefloop" / "tiny"


def resolve_model(name_or_path: str | Path) -> str:
    """ "tiny" -> the built (cached) preset; an existing local path -> itself; anything else
    is passed through as a Hugging Face hub ID."""
    name = str(name_or_path)
    if name == "tiny":
        return str(build_tiny())
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    return name


# ---------------------------------------------------------------- loading


def load_tokenizer(name_or_path: str | Path) -> PreTrainedTokenizerBase:
    """Tokenizer with a pad token (the EOS token when the model has none)."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(name_or_path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_policy(
    name_or_path: str | Path,
    config: _Common | None = None,
    residual_dropout: float | None = None,
    trainable: bool = True,
) -> tuple[PreTrainedModel | PeftModel, PreTrainedTokenizerBase]:
    """A causal LM and its tokenizer; `residual_dropout` overrides the checkpoint's residual
    dropout while training (saved checkpoints keep the base's), `config.use_lora` wraps it
    with peft LoRA adapters (only when `trainable`)."""
    path = resolve_model(name_or_path)
    tokenizer = load_tokenizer(path)
    overrides = _dropout_overrides(path, residual_dropout=residual_dropout)
    base: PreTrainedModel = AutoModelForCausalLM.from_pretrained(path, **overrides)
    _remember_base_config(base, path, overrides)
    _set_generation_tokens(base, tokenizer)
    model: PreTrainedModel | PeftModel = base
    if trainable and config is not None and config.use_lora:
        model = apply_lora(base, config, task_type="CAUSAL_LM")
    if not trainable:
        model.requires_grad_(False).eval()
    return model, tokenizer


def load_reward_model(
    path_or_policy_path: str | Path,
    config: _Common | None = None,
    trainable: bool = False,
    disable_dropout: bool = True,
    distinct_pad: bool = False,
) -> tuple[PreTrainedModel | PeftModel, PreTrainedTokenizerBase, float]:
    """A reward (or value) model: the backbone with the unembedding replaced by a scalar head
    (`AutoModelForSequenceClassification`, num_labels=1). From a causal LM checkpoint the head
    is newly initialised. Dropout is off unless `disable_dropout` is False (saved checkpoints
    keep the base's settings). `distinct_pad` gives a tokenizer whose pad is its EOS a pad
    token of its own. Returns (model, tokenizer, reward_bias from prefloop.json)."""
    path = resolve_model(path_or_policy_path)
    tokenizer = load_tokenizer(path)
    overrides = _dropout_overrides(path, disable=disable_dropout)
    base: PreTrainedModel = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=1, **overrides
    )
    _remember_base_config(base, path, overrides)
    if disable_dropout:  # also dropout modules that do not read the config (TRL does this)
        for module in base.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    if distinct_pad and tokenizer.pad_token_id in (None, tokenizer.eos_token_id):
        # Hugging Face's sequence classifiers read the last token that is not the pad token:
        # with pad == EOS they would read the token before the EOS we score at.
        tokenizer.add_special_tokens({"pad_token": RM_PAD_TOKEN})
        base.resize_token_embeddings(len(tokenizer))
    # The head reads the last non-padding token; a pad id must be known for batches > 1.
    base.config.pad_token_id = tokenizer.pad_token_id
    model: PreTrainedModel | PeftModel = base
    if trainable and config is not None and config.use_lora:
        model = apply_lora(base, config, task_type="SEQ_CLS")
    if not trainable:
        model.requires_grad_(False).eval()
    bias = float(read_prefloop_meta(path).get("reward_bias", 0.0))
    return model, tokenizer, bias


def _dropout_overrides(
    path: str, residual_dropout: float | None = None, disable: bool = False
) -> dict[str, float]:
    """Config kwargs that set residual dropout (or, with `disable`, every dropout) for the
    names the architecture uses. Warns when `residual_dropout` matches none of them."""
    if residual_dropout is None and not disable:
        return {}
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(path)
    dropouts = [
        n
        for n, v in cfg.to_dict().items()
        if isinstance(v, float) and ("dropout" in n or "pdrop" in n)
    ]
    if disable:
        return {n: 0.0 for n in dropouts}
    names = [n for n in RESIDUAL_DROPOUT_NAMES if hasattr(cfg, n)]
    if not names:
        warnings.warn(
            f"residual_dropout={residual_dropout} matches no residual dropout setting of "
            f"{type(cfg).__name__} (its dropout settings: {', '.join(dropouts) or 'none'}); "
            "the model trains without residual dropout",
            stacklevel=3,
        )
    assert residual_dropout is not None  # (None without `disable` returned {} above)
    return {n: float(residual_dropout) for n in names}


def _remember_base_config(model: PreTrainedModel, path: str, overrides: dict[str, float]) -> None:
    """Keep the checkpoint's own values of the config fields overridden for training, so that
    save_checkpoint writes them back (a training setting is not the model's)."""
    if overrides:
        from transformers import AutoConfig

        base = AutoConfig.from_pretrained(path)
        model._prefloop_base_config = {n: getattr(base, n) for n in overrides}  # type: ignore[assignment]


@contextlib.contextmanager
def _base_config(model: torch.nn.Module) -> Iterator[None]:
    """The model's config with the base checkpoint's values of training-only overrides."""
    inner = getattr(model, "get_base_model", lambda: model)()
    base = getattr(inner, "_prefloop_base_config", {})
    config = inner.config
    current = {n: getattr(config, n) for n in base}
    for n, v in base.items():
        setattr(config, n, v)
    try:
        yield
    finally:
        for n, v in current.items():
            setattr(config, n, v)


def _set_generation_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        if model.generation_config.eos_token_id is None:
            model.generation_config.eos_token_id = tokenizer.eos_token_id


def apply_lora(model: PreTrainedModel, config: _Common, task_type: str) -> PeftModel:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        task_type=task_type,
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
    )
    return get_peft_model(model, lora)


# ---------------------------------------------------------------- scores and values


def _score_head(model: torch.nn.Module) -> torch.nn.Module:
    """The scalar head of a sequence-classification model (through DDP / peft wrappers)."""
    for m in model.modules():
        for name in ("score", "classifier"):
            head = getattr(m, name, None)
            if isinstance(head, torch.nn.Module):
                return head
    raise ValueError(f"{type(model).__name__} has no 'score' or 'classifier' head")


def token_scores(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """The scalar head's output at every position, shape (batch, seq). The model's own
    forward runs (so DDP, autocast and peft apply); a hook keeps the per-token head output
    that the model otherwise pools away."""
    captured: list[torch.Tensor] = []
    handle = _score_head(model).register_forward_hook(lambda m, i, out: captured.append(out))
    try:
        kwargs = {"position_ids": position_ids} if position_ids is not None else {}
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs)
    finally:
        handle.remove()
    return captured[-1].squeeze(-1).float()


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last non-padding token of each row (left or right padding)."""
    width = attention_mask.shape[1]
    return width - 1 - attention_mask.flip(1).long().argmax(1)


def sequence_scores(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """r(x, y): the head's output at the last non-padding token, shape (batch,)."""
    scores = token_scores(model, input_ids, attention_mask)
    return scores.gather(1, last_token_index(attention_mask)[:, None]).squeeze(1)


# ---------------------------------------------------------------- accelerate and checkpoints


def make_accelerator(config: _Common) -> Accelerator:
    """A fresh Accelerator for one training run (a worker process runs many jobs, each with
    its own precision and accumulation settings; the distributed process group is kept)."""
    AcceleratorState._reset_state()
    GradientState._reset_state()
    # Without an accelerator, say "CPU" explicitly: Accelerate only sets up several CPU
    # processes (torchrun, gloo) when told it runs on CPU.
    has_accelerator = (
        torch.cuda.is_available()
        or torch.backends.mps.is_available()
        or (hasattr(torch, "xpu") and torch.xpu.is_available())
    )
    return Accelerator(
        cpu=config.cpu or not has_accelerator,
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
    )


def save_checkpoint(
    accelerator: Accelerator,
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    output_dir: str | Path,
    meta: dict[str, Any] | None = None,
) -> None:
    """Save a plain Hugging Face checkpoint (LoRA merged) and, last, prefloop.json: a
    directory with prefloop.json is complete. Only the main process writes."""
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    is_peft = hasattr(unwrapped, "merge_and_unload")
    # Collective under FSDP / DeepSpeed (gathers shards), so every process calls it.
    state = None if is_peft else accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / META_FILE).unlink(missing_ok=True)
        if is_peft:  # save the merged full model, loadable without peft
            unwrapped = copy.deepcopy(unwrapped).merge_and_unload()
        with _base_config(unwrapped):
            unwrapped.save_pretrained(out, state_dict=state, save_function=accelerator.save)
        tokenizer.save_pretrained(out)
        if meta is not None:
            write_prefloop_meta(out, meta)
    accelerator.wait_for_everyone()


def checkpoint_meta(
    kind: str,
    parents: list[str],
    config: _Common,
    metrics: dict[str, float],
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """prefloop.json content: the caller's `meta` (e.g. data_snapshot, parents as model
    version IDs) over our defaults; kind, hyperparameters, metrics and the preset inherited
    from the first parent (which picks the defaults of later steps) are always ours."""
    out: dict[str, Any] = {"parents": parents, "data_snapshot": None, **(meta or {})}
    out.update(kind=kind, hyperparameters=config.to_dict(), metrics=metrics)
    out.update(preset=model_preset(parents[0]) if parents else None)
    return out


def finalize_checkpoint(
    accelerator: Accelerator, candidate: Path, output_dir: Path, meta: dict[str, Any]
) -> None:
    """Move a saved candidate's files into output_dir and write prefloop.json last."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (output_dir / META_FILE).unlink(missing_ok=True)
        for f in candidate.iterdir():
            target = output_dir / f.name
            if target.is_dir():
                shutil.rmtree(target)
            f.replace(target)
        shutil.rmtree(candidate, ignore_errors=True)
        write_prefloop_meta(output_dir, meta)
    accelerator.wait_for_everyone()
