"""Fine-tuning: a seed-independent head, seeded data order, the regression path, saved outputs."""

import json
import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
import torch

from permerge.alignment.variants import Variant
from permerge.models import load_model
from permerge.training.finetune import (
    finetune,
    length_grouped_batches,
    load_for_classification,
    shared_pooler_init,
    task_info,
    without_shared_pooler,
)
from permerge.training.pretrain import pretrain_bert

from .test_evaluate import ADJS, corpus_dir, make_sentences, tokenizer, tokenizer_dir  # noqa: F401  (fixtures)

TINY = dict(
    num_hidden_layers=2,
    hidden_size=32,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=32,
    seq_len=32,
)


@pytest.fixture(scope="module")
def mlm_dirs(tokenizer_dir, corpus_dir, tmp_path_factory):
    """Two briefly pre-trained seeds (no pooler in the MLM checkpoints)."""
    root = tmp_path_factory.mktemp("mlm")
    for seed in (1, 2):
        pretrain_bert(
            tokenizer_dir=tokenizer_dir,
            text_file=corpus_dir / "train.txt",
            seed=seed,
            out_dir=root / f"seed{seed}",
            steps=5,
            batch_size=8,
            **TINY,
        )
    return root / "seed1", root / "seed2"


def _head(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith(("classifier.", "bert.pooler."))}


def test_head_identical_across_seeds(mlm_dirs):
    m1 = load_for_classification(mlm_dirs[0], num_labels=3, head_seed=0)
    m2 = load_for_classification(mlm_dirs[1], num_labels=3, head_seed=0)
    m3 = load_for_classification(mlm_dirs[1], num_labels=3, head_seed=1)
    h1, h2, h3 = _head(m1), _head(m2), _head(m3)
    assert set(h1) == {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"}
    assert all(torch.equal(h1[k], h2[k]) for k in h1)
    assert not torch.equal(h1["classifier.weight"], h3["classifier.weight"])
    assert h1["classifier.weight"].std().item() == pytest.approx(m1.config.initializer_range, rel=0.3)
    assert (h1["classifier.bias"] == 0).all()
    # the encoder is each seed's own
    assert not torch.equal(m1.bert.embeddings.word_embeddings.weight, m2.bert.embeddings.word_embeddings.weight)


def test_pretrained_pooler_is_kept(mlm_dirs, tmp_path):
    m = load_for_classification(mlm_dirs[0], num_labels=2, head_seed=0)
    with torch.no_grad():
        m.bert.pooler.dense.weight.fill_(0.5)
    m.save_pretrained(str(tmp_path))
    again = load_for_classification(tmp_path, num_labels=2, head_seed=0)
    assert (again.bert.pooler.dense.weight == 0.5).all()  # a checkpoint's pooler is pre-trained: kept
    assert torch.equal(again.classifier.weight, m.classifier.weight)  # classifier re-drawn from head_seed 0


def _regression_task(n, seed):
    """Score = how many times 'happy' appears (0-3): learnable from the tokens alone."""
    rng = random.Random(seed)
    out = []
    for s in make_sentences(n, seed=seed):
        k = rng.randrange(4)
        words = s.rstrip(".").split()
        for _ in range(k):
            words.insert(rng.randrange(1, len(words)), "happy")
        out.append({"sentence1": " ".join(words), "sentence2": "the happy cat.", "label": float(k)})
    return out


def test_regression_finetuning_learns_and_saves(mlm_dirs, tmp_path):
    from transformers import AutoTokenizer, BertForSequenceClassification

    torch.set_num_threads(1)
    out = tmp_path / "stsb"
    m = finetune(
        model_dir=mlm_dirs[0],
        train_examples=_regression_task(256, 0),
        eval_examples=_regression_task(64, 1),
        text_keys=["sentence1", "sentence2"],
        num_labels=1,
        metric="pearson",
        out_dir=out,
        seed=1,
        lr=2e-3,
        epochs=10,
        batch_size=16,
        max_length=32,
    )
    assert m["train_loss_final"] < 0.5 * m["train_loss_first"], m
    assert m["eval_loss"] < 1.0 and m["value"] == m["eval_pearson"] > 0.5, m  # label variance 1.06
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["value"] == pytest.approx(m["value"]) and saved["metric"] == "pearson"
    model = BertForSequenceClassification.from_pretrained(str(out))
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"
    assert AutoTokenizer.from_pretrained(str(out)).mask_token == "[MASK]"


def test_seed_controls_data_order_only(mlm_dirs, tmp_path):
    rng = random.Random(0)
    data = [{"sentence": s, "label": int(any(a in s for a in ADJS[:3]))} for s in make_sentences(48, seed=7)]
    rng.shuffle(data)
    kw = dict(
        model_dir=mlm_dirs[0],
        train_examples=data,
        eval_examples=data[:16],
        text_keys=["sentence"],
        num_labels=2,
        metric="matthews",
        epochs=1,
        batch_size=8,
        lr=1e-3,
        max_length=32,
    )
    a = finetune(out_dir=tmp_path / "a", seed=1, **kw)
    b = finetune(out_dir=tmp_path / "b", seed=1, **kw)
    c = finetune(out_dir=tmp_path / "c", seed=2, **kw)
    assert a["eval_loss"] == b["eval_loss"] != c["eval_loss"]
    assert {"eval_accuracy", "eval_matthews", "value"} <= set(a)


def test_length_grouped_batches_cover_every_example_with_less_padding():
    lengths = torch.randint(5, 128, (2000,), generator=torch.Generator().manual_seed(0))
    batches = length_grouped_batches(lengths, 32, torch.Generator().manual_seed(1), group=10)
    assert len(batches) == 63  # ceil(2000 / 32), as unsorted batches
    assert sorted(torch.cat(batches).tolist()) == list(range(2000))
    padded = sum(int(lengths[b].max()) * len(b) for b in batches)
    random_batches = torch.randperm(2000, generator=torch.Generator().manual_seed(1)).split(32)
    padded_random = sum(int(lengths[b].max()) * len(b) for b in random_batches)
    assert padded < 0.7 * padded_random  # within-batch spread is one tenth of the range or less
    # The batch order is random (not longest first) and set by the generator.
    widths = [int(lengths[b].max()) for b in batches]
    assert widths != sorted(widths, reverse=True)
    again = length_grouped_batches(lengths, 32, torch.Generator().manual_seed(1), group=10)
    other = length_grouped_batches(lengths, 32, torch.Generator().manual_seed(2), group=10)
    assert all(torch.equal(x, y) for x, y in zip(batches, again))
    assert not all(torch.equal(x, y) for x, y in zip(batches, other))


def test_task_info_covers_glue():
    for task in ("mnli", "qqp", "qnli", "sst2", "cola", "stsb", "mrpc", "rte"):
        info = task_info(task)
        assert 1 <= len(info.text_keys) <= 2
        assert (info.num_labels == 1) == (task == "stsb")
    assert task_info("mnli").eval_split == "validation_mismatched"


# ------------------------------------------------------------------ the paper's protocol (run_glue defaults)


@pytest.fixture(scope="module")
def pretraining_dir(mlm_dirs, tmp_path_factory):
    """Seed 1 as a BertForPreTraining checkpoint (as the MultiBERTs): its own pooler and NSP head."""
    from transformers import BertForMaskedLM, BertForPreTraining

    from permerge.checkpoints import save_pretrained_atomic

    mlm = BertForMaskedLM.from_pretrained(str(mlm_dirs[0]))
    torch.manual_seed(123)
    model = BertForPreTraining(mlm.config)
    missing, _ = model.load_state_dict(mlm.state_dict(), strict=False)
    assert all(k.startswith(("bert.pooler.", "cls.seq_relationship.")) for k in missing)
    model.config.architectures = ["BertForPreTraining"]
    return save_pretrained_atomic(model, tmp_path_factory.mktemp("pre") / "seed1", mlm_dirs[0])


def _classification_data(n=32):
    data = [{"sentence": s, "label": int(any(a in s for a in ADJS[:3]))} for s in make_sentences(n, seed=7)]
    random.Random(0).shuffle(data)
    return data


def _tiny_finetune(model_dir, out_dir, **kw):
    data = _classification_data()
    args = dict(
        model_dir=model_dir,
        train_examples=data,
        eval_examples=data[:8],
        text_keys=["sentence"],
        num_labels=2,
        metric="accuracy",
        out_dir=out_dir,
        seed=1,
        epochs=1,
        batch_size=8,
        lr=1e-3,
        max_length=32,
        warmup=0.0,
    )
    return finetune(**{**args, **kw})


def test_schedule_without_warmup_starts_at_full_lr_and_decays_linearly():
    from permerge.training.train import make_schedule

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = make_schedule(opt, 0.0, 10)
    used = []
    for _ in range(10):
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert used == pytest.approx([0.1 * (10 - k) / 10 for k in range(10)], abs=1e-12)
    assert opt.param_groups[0]["lr"] == 0.0  # 0 once every step is done
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = make_schedule(opt, 0.2, 10)  # 2 warm-up steps from 0 (as HF), then decay over the other 8
    used = []
    for _ in range(10):
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert used == pytest.approx([0.0, 0.05, 0.1, 0.0875, 0.075, 0.0625, 0.05, 0.0375, 0.025, 0.0125], abs=1e-12)
    with pytest.raises(ValueError, match="warmup must be a fraction"):
        make_schedule(opt, 1.5, 10)


def test_finetune_records_protocol_and_schedule(mlm_dirs, tmp_path):
    m = _tiny_finetune(mlm_dirs[0], tmp_path / "a", fp16=True, data_seed=42, head_seed=42)
    saved = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert saved == pytest.approx(m)
    assert m["steps"] == 4 and m["n_train"] == 32 and m["n_eval"] == 8
    assert m["lr_first_step"] == pytest.approx(1e-3) and m["lr_last_step"] == pytest.approx(1e-3 / 4)
    assert (m["lr"], m["batch_size"], m["epochs"], m["max_length"], m["warmup"]) == (1e-3, 8, 1.0, 32, 0.0)
    assert (m["data_seed"], m["head_seed"], m["seed"]) == (42, 42, 1)
    assert m["fp16"] is True and m["fp16_in_effect"] is False  # CPU: requested, ignored
    assert m["pooler_init"] == "head_seed" and len(m["pooler_init_sha256"]) == 64
    warm = _tiny_finetune(mlm_dirs[0], tmp_path / "b", warmup=0.5)
    assert warm["lr_first_step"] == 0.0 and warm["lr_last_step"] == pytest.approx(1e-3 / 2)
    assert warm["data_seed"] == 1  # None: the model's own seed


def test_data_seed_fixes_batch_order_across_model_seeds(mlm_dirs, tmp_path):
    from permerge.training.finetune import training_batches

    lengths = torch.randint(3, 30, (50,), generator=torch.Generator().manual_seed(0))
    a = list(training_batches(lengths, 8, 20, torch.Generator().manual_seed(42)))
    b = list(training_batches(lengths, 8, 20, torch.Generator().manual_seed(42)))
    c = list(training_batches(lengths, 8, 20, torch.Generator().manual_seed(43)))
    assert len(a) == 20 and all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert sorted(torch.cat(a[:7]).tolist()) == list(range(50))  # the first 7 batches are one epoch
    # two seeds' fine-tuning runs with one data_seed see the same batches; without it, their own orders
    runs = {
        (seed, ds): _tiny_finetune(mlm_dirs[seed - 1], tmp_path / f"s{seed}-{ds}", seed=seed, data_seed=ds, epochs=2)
        for seed, ds in ((1, 42), (2, 42), (1, None), (2, None))
    }
    assert runs[1, 42]["data_order_sha256"] == runs[2, 42]["data_order_sha256"]
    assert runs[1, None]["data_order_sha256"] != runs[2, None]["data_order_sha256"]
    assert runs[1, None]["data_seed"] == 1 and runs[2, None]["data_seed"] == 2


def _sha(t):
    import hashlib

    return hashlib.sha256(t.to(torch.float32).contiguous().numpy().tobytes()).hexdigest()


def test_pretraining_checkpoint_finetunes_from_its_own_pooler(pretraining_dir, mlm_dirs, tmp_path):
    from safetensors.torch import load_file

    own = load_file(str(pretraining_dir / "model.safetensors"))["bert.pooler.dense.weight"]
    m = _tiny_finetune(pretraining_dir, tmp_path / "pre", head_seed=42)
    assert m["pooler_init"] == "pretrained" and m["pooler_init_sha256"] == _sha(own)
    model = load_for_classification(pretraining_dir, num_labels=2, head_seed=42)
    assert torch.equal(model.bert.pooler.dense.weight, own)
    tuned = load_model(tmp_path / "pre", num_labels=2)  # saved as a sequence classifier, not a pre-training model
    assert type(tuned).__name__ == "BertForSequenceClassification"
    # BertForMaskedLM checkpoints have no pooler: the same head_seed pooler for every checkpoint
    m1 = _tiny_finetune(mlm_dirs[0], tmp_path / "m1", head_seed=42)
    m2 = _tiny_finetune(mlm_dirs[1], tmp_path / "m2", head_seed=42, seed=2)
    assert m1["pooler_init"] == m2["pooler_init"] == "head_seed"
    assert m1["pooler_init_sha256"] == m2["pooler_init_sha256"] != m["pooler_init_sha256"]
    fresh = load_for_classification(mlm_dirs[1], num_labels=2, head_seed=42).bert.pooler.dense.weight
    assert m1["pooler_init_sha256"] == _sha(fresh.detach())
    assert _tiny_finetune(mlm_dirs[0], tmp_path / "m3", head_seed=7)["pooler_init_sha256"] != m1["pooler_init_sha256"]
    # What compute_permutations asks before aligning the pooler: shared only for one head_seed draw.
    assert shared_pooler_init([tmp_path / "m1", tmp_path / "m2"]) == m1["pooler_init_sha256"]
    assert shared_pooler_init([tmp_path / "m1", tmp_path / "m3"]) is None  # another head_seed
    assert shared_pooler_init([tmp_path / "m1", tmp_path / "pre"]) is None  # a pre-trained pooler
    assert shared_pooler_init([tmp_path / "m1", mlm_dirs[0]]) is None  # not fine-tuned here: no metrics.json
    full = Variant(components=frozenset({"ff", "pooler"}))
    variant, note = without_shared_pooler(full, [tmp_path / "m1", tmp_path / "m2"])
    assert variant.components == {"ff"} and note.startswith("not permuted") and m1["pooler_init_sha256"] in note
    assert without_shared_pooler(full, [tmp_path / "m1", tmp_path / "pre"]) == (full, None)


def test_finetuning_with_dropout_is_reproducible(mlm_dirs, tmp_path):
    """Dropout's masks come from the training seed, not from whatever state torch's global generator is in
    (a fresh process seeds it at random): the same call gives the same weights."""
    from safetensors.torch import load_file

    runs = []
    for k, noise in enumerate((1, 2)):
        torch.manual_seed(noise)  # another process's global generator state
        torch.rand(noise)
        _tiny_finetune(mlm_dirs[0], tmp_path / f"r{k}", dropout=0.1)
        runs.append(load_file(str(tmp_path / f"r{k}" / "model.safetensors")))
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][n], runs[1][n]) for n in runs[0])
    # ... and dropout is really on: without it the weights differ
    _tiny_finetune(mlm_dirs[0], tmp_path / "nodrop", dropout=0.0)
    nodrop = load_file(str(tmp_path / "nodrop" / "model.safetensors"))
    assert not torch.equal(nodrop["classifier.weight"], runs[0]["classifier.weight"])


@pytest.fixture(scope="module")
def nsp_dirs(tokenizer_dir, corpus_dir, tmp_path_factory):
    """Two briefly pre-trained seeds of the embedded default objective (mlm_nsp: BertForPreTraining)."""
    root = tmp_path_factory.mktemp("nsp")
    for seed in (1, 2):
        pretrain_bert(
            tokenizer_dir=tokenizer_dir,
            text_file=corpus_dir / "train.txt",
            seed=seed,
            out_dir=root / f"seed{seed}",
            objective="mlm_nsp",
            steps=5,
            batch_size=8,
            **TINY,
        )
    return root / "seed1", root / "seed2"


def test_nsp_seeds_finetune_from_their_own_pooler_with_the_shared_head(nsp_dirs, tmp_path):
    """Each mlm_nsp seed fine-tunes from its own pre-trained pooler (different across seeds) with the
    classifier both draw from head_seed; metrics.json names the checkpoint it started from by sha256."""
    import hashlib

    from safetensors.torch import load_file

    runs, poolers = [], []
    for seed, d in enumerate(nsp_dirs, start=1):
        own = load_file(str(d / "model.safetensors"))["bert.pooler.dense.weight"]
        model = load_for_classification(d, num_labels=2, head_seed=42)
        assert torch.equal(model.bert.pooler.dense.weight, own)
        m = _tiny_finetune(d, tmp_path / f"s{seed}", seed=seed, head_seed=42)
        assert m["pooler_init"] == "pretrained" and m["pooler_init_sha256"] == _sha(own)
        assert m["pretrained_sha256"] == hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest()
        assert (
            json.loads((tmp_path / f"s{seed}" / "metrics.json").read_text())["pretrained_sha256"]
            == m["pretrained_sha256"]
        )
        runs.append(m)
        poolers.append(own)
        heads = _head(model)
    assert not torch.equal(poolers[0], poolers[1])
    assert runs[0]["pretrained_sha256"] != runs[1]["pretrained_sha256"]
    assert runs[0]["pooler_init_sha256"] != runs[1]["pooler_init_sha256"]
    first = _head(load_for_classification(nsp_dirs[0], num_labels=2, head_seed=42))
    assert torch.equal(first["classifier.weight"], heads["classifier.weight"])  # one head_seed draw for both
    # pre-trained poolers are not shared: compute_permutations aligns them (the `all` variant)
    assert shared_pooler_init([tmp_path / "s1", tmp_path / "s2"]) is None
