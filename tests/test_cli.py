"""`permerge align` / `permerge merge` on tiny random models saved to disk."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (
    AutoModelForMaskedLM,
    BertTokenizerFast,
)

from permerge.checkpoints import load_permutations, read_permutation_metadata
from permerge.cli import build_parser, main
from tests import tiny

torch.set_num_threads(1)

WORDS = "the a cat dog sat on mat ran fast slow red blue big small house tree bird sings".split()


def save_tokenizer(path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    tok = Tokenizer(models.WordPiece(vocab={w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    fast = BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(path)
    return len(vocab)


def config(vocab_size, **kw):
    return tiny.bert_config(vocab_size=vocab_size, **kw)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    vocab = save_tokenizer(root / "tok")
    for seed in (1, 2):
        tiny.model(config(vocab), "mlm", seed=seed).save_pretrained(root / f"mlm{seed}")
        save_tokenizer(root / f"mlm{seed}")
    tiny.model(config(vocab), "cls", seed=3).save_pretrained(root / "cls")
    save_tokenizer(root / "cls")
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, size=rng.integers(2, 12))) for _ in range(40)]
    (root / "text.txt").write_text("\n".join(lines[:20] + [""] + lines[20:]) + "\n")
    (root / "all.yaml").write_text("components: [ff, attn, res]\nresidual: all\nqk: separate\n")
    (root / "variants.yaml").write_text("variants:\n  vanilla: {components: []}\n  bad: {components: [mlp]}\n")
    (root / "typo.yaml").write_text("componets: [ff]\n")
    return root


def mlm_logits(path, ids):
    model = AutoModelForMaskedLM.from_pretrained(path).eval()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids)).logits


def test_align_then_merge(workspace, caplog):
    w = workspace
    caplog.set_level("INFO", logger="permerge")
    rc = main(
        [
            "align",
            "--model-a",
            str(w / "mlm1"),
            "--model-b",
            str(w / "mlm2"),
            "--text",
            str(w / "text.txt"),
            "--options",
            str(w / "all.yaml"),
            "--out",
            str(w / "aligned"),
            "--batch-size",
            "8",
            "--max-lines",
            "30",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    assert (w / "aligned" / "permutations.safetensors").is_file()
    assert (w / "aligned" / "tokenizer.json").is_file()
    text = caplog.text
    assert "function-preserving" in text and "NOT function-preserving" not in text
    assert "statistics on 30 texts" in text and "tokens" in text

    perms = load_permutations(w / "aligned" / "permutations.safetensors")
    assert set(perms) == {"res", "ff.0", "ff.1", "attn.0", "attn.1", "qk.0", "qk.1"}
    assert not np.array_equal(perms["res"], np.arange(16))  # independent seeds: a real permutation
    meta = read_permutation_metadata(w / "aligned" / "permutations.safetensors")
    assert meta["function_preserving"] == "true" and '"residual": "all"' in meta["variant"]
    assert int(meta["texts"]) == 30 and int(meta["tokens"]) > 30

    ids = torch.randint(0, 23, (2, 9), generator=torch.Generator().manual_seed(0))
    b_logits = mlm_logits(w / "mlm2", ids)
    torch.testing.assert_close(mlm_logits(w / "aligned", ids), b_logits, atol=1e-4, rtol=0)

    rc = main(
        [
            "merge",
            "--model-a",
            str(w / "mlm1"),
            "--aligned-b",
            str(w / "aligned"),
            "--lam",
            "0.5",
            "--out",
            str(w / "merged"),
        ]
    )
    assert rc == 0
    merged = AutoModelForMaskedLM.from_pretrained(w / "merged")
    a = AutoModelForMaskedLM.from_pretrained(w / "mlm1")
    b = AutoModelForMaskedLM.from_pretrained(w / "aligned")
    for (name, p), pa, pb in zip(merged.named_parameters(), a.parameters(), b.parameters()):
        torch.testing.assert_close(p, (pa + pb) / 2, msg=name)
    assert (w / "merged" / "tokenizer.json").is_file()
    for lam, ref in (("0", w / "mlm1"), ("1", w / "mlm2")):  # endpoints are the models themselves
        assert (
            main(
                [
                    "merge",
                    "--model-a",
                    str(w / "mlm1"),
                    "--aligned-b",
                    str(w / "aligned"),
                    "--lam",
                    lam,
                    "--out",
                    str(w / f"lam{lam}"),
                ]
            )
            == 0
        )
        torch.testing.assert_close(mlm_logits(w / f"lam{lam}", ids), mlm_logits(ref, ids), atol=1e-4, rtol=0)


def test_vanilla_variant_from_a_variants_file_is_identity(workspace):
    w = workspace
    rc = main(
        [
            "align",
            "--model-a",
            str(w / "mlm1"),
            "--model-b",
            str(w / "mlm2"),
            "--text",
            str(w / "text.txt"),
            "--options",
            str(w / "variants.yaml"),
            "--variant",
            "vanilla",
            "--out",
            str(w / "vanilla"),
        ]
    )
    assert rc == 0
    assert load_permutations(w / "vanilla" / "permutations.safetensors") == {}
    b = AutoModelForMaskedLM.from_pretrained(w / "mlm2")
    v = AutoModelForMaskedLM.from_pretrained(w / "vanilla")
    assert all(torch.equal(x, y) for x, y in zip(b.parameters(), v.parameters()))


@pytest.mark.parametrize(
    "case, needle",
    [
        ("architectures", "architectures: ['BertForMaskedLM'] vs ['BertForSequenceClassification']"),
        ("missing_dir", "--model-b: directory"),
        ("missing_text", "text file"),
        ("typo", "unknown option 'componets'"),
        ("bad_variant", "variant 'bad': option 'components' has unknown value 'mlp'"),
        ("no_variant", "has no variant 'nope'"),
        ("truncated", "model.safetensors: truncated"),
        ("non_utf8", "bad.txt, line 2: not UTF-8"),
    ],
)
def test_align_bad_input_fails_cleanly(workspace, capsys, case, needle):
    w = workspace
    args = {
        "--model-a": w / "mlm1",
        "--model-b": w / "mlm2",
        "--text": w / "text.txt",
        "--options": w / "all.yaml",
        "--out": w / f"out_{case}",
    }
    extra = []
    if case == "architectures":
        args["--model-b"] = w / "cls"
    elif case == "missing_dir":
        args["--model-b"] = w / "nowhere"
    elif case == "missing_text":
        args["--text"] = w / "none.txt"
    elif case == "typo":
        args["--options"] = w / "typo.yaml"
    elif case == "truncated":  # a checkpoint cut short: named, and nothing written
        import shutil

        cut = w / "mlm2_cut"
        shutil.copytree(w / "mlm2", cut, dirs_exist_ok=True)
        data = (cut / "model.safetensors").read_bytes()
        (cut / "model.safetensors").write_bytes(data[: len(data) // 2])
        args["--model-b"] = cut
    elif case == "non_utf8":
        (w / "bad.txt").write_bytes(b"a fine line\nnot \xe9 utf-8\n")
        args["--text"] = w / "bad.txt"
    else:
        args["--options"] = w / "variants.yaml"
        extra = ["--variant", "bad" if case == "bad_variant" else "nope"]
    argv = ["align"] + [str(x) for kv in args.items() for x in kv] + extra
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "permerge align: error:" in err and needle in err
    assert not (w / f"out_{case}").exists()
    assert not list(w.glob(f".out_{case}*"))


def test_merge_mismatch_exits_nonzero_from_the_console(workspace):
    w = workspace
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "permerge.cli",
            "merge",
            "--model-a",
            str(w / "mlm1"),
            "--aligned-b",
            str(w / "cls"),
            "--out",
            str(w / "bad_merge"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "models are not compatible" in proc.stderr and "architectures" in proc.stderr
    assert not (w / "bad_merge").exists()


def test_parser_is_extensible():
    parser = build_parser()
    assert {"align", "merge"} <= set(parser._subparsers._group_actions[0].choices)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["merge", "--model-a", "x"])
    assert info.value.code == 2
