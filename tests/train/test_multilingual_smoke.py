"""The multilingual path of the pipeline: an XLM-R-shaped model on 8 languages, end to end.

No multilingual weights can be downloaded here, so the test builds a tiny randomly
initialised XLM-RoBERTa and trains a multilingual BPE tokenizer on the data on the spot;
the pipeline (configs/sentiment_multi.yaml, only base_model pointed at it) must train,
export, quantize and ship an artifact that tokenizes and scores Arabic, Hindi and Spanish.
"""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import pytest

pytestmark = pytest.mark.train
ROOT = Path(__file__).resolve().parents[2]
LANGS = ["ar", "de", "en", "es", "fr", "hi", "it", "pt"]


def head(src: Path, dst: Path, n: int) -> list[str]:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open(encoding="utf-8") as fh:
        lines = list(islice(fh, n))
    dst.write_text("".join(lines), encoding="utf-8")
    return [json.loads(x)["text"] for x in lines]


def tiny_xlmr(texts: list[str], out: Path) -> Path:
    """A 2-layer XLM-RoBERTa with random weights and a BPE vocabulary learnt from `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import XLMRobertaConfig, XLMRobertaModel

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-R's ids 0-4
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=3000, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    out.mkdir(parents=True)
    tok.save(str(out / "tokenizer.json"))
    cfg = XLMRobertaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    XLMRobertaModel(cfg).save_pretrained(out)
    return out


def test_multilingual_config_trains_a_working_artifact(tmp_path: Path, data_root: Path) -> None:
    pytest.importorskip("torch", reason="training needs the `train` extra")
    from serve_app.model.predictor import OnnxPredictor
    from training.config import load_config
    from training.pipeline import run_pipeline

    tiny = tmp_path / "data"
    texts: list[str] = []
    for lang in LANGS:
        for split, n in [("train", 40), ("validation", 16), ("test", 16)]:
            src = data_root / "sentiment_multi" / lang / f"{split}.jsonl"
            texts += head(src, tiny / "sentiment_multi" / lang / f"{split}.jsonl", n)
    base = tiny_xlmr(texts, tmp_path / "tiny-xlmr")

    cfg = load_config(ROOT / "configs" / "sentiment_multi.yaml", {"epochs": 1, "max_steps": 4, "threads": 2})
    cfg.base_model = str(base)
    cfg.hparams.max_length = 64
    cfg.export.quantization = [{"per_channel": True, "preprocess": False}]
    out = tmp_path / "artifact"
    card = run_pipeline(cfg, out, tmp_path / "run", data_root=tiny)

    labels = json.loads((out / "labels.json").read_text())
    assert labels["languages"] == LANGS and labels["heads"]["sentiment"]["labels"] == [
        "negative",
        "neutral",
        "positive",
    ]
    assert card["export"]["torch_vs_onnx_max_abs_diff"] < 1e-4
    assert {f"{lang}_test" for lang in LANGS} <= set(card["metrics"])
    assert all(card["metrics"][f"{lang}_test"]["int8"]["n"] == 16 for lang in LANGS)

    pred = OnnxPredictor(out, threads=1)
    samples = ["هذا رائع جدا", "yeh bahut bura hai yaar", "me encanta este lugar"]
    ids = pred.encode(samples)
    assert all(len(x) > 2 and 3 not in x[1:-1] for x in ids[:1]), ids  # Arabic is not all <unk>
    result = pred.predict(samples)
    assert all(
        r.label in labels["heads"]["sentiment"]["labels"] and abs(sum(r.scores.values()) - 1) < 1e-3
        for r in result
    )


def test_hub_base_model_offline_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="training needs the `train` extra")
    from training.modeling import BaseModelError, resolve_base_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: nothing to fall back on
    with pytest.raises(BaseModelError, match="HF_HUB_OFFLINE"):
        resolve_base_model("xlm-roberta-base")
    assert resolve_base_model(str(tmp_path)) == tmp_path  # a local directory is used as it is
