"""The shared training loop against a hand-rolled reference: AdamW, the two schedules, clipping, the
non-finite check and the order of the batch draws."""

import copy
import logging
import math

import pytest
import torch

from permerge.training.train import make_schedule, param_groups, train


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(5, 8), torch.nn.LayerNorm(8), torch.nn.Tanh(), torch.nn.Linear(8, 2)
    ).double()


def _batches(n=4):
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(6, 2, generator=g, dtype=torch.float64))
        for _ in range(n)
    ]


def _loss(model, batch):
    x, y = batch
    return torch.nn.functional.mse_loss(model(x), y) * 10  # large gradients: clipping is active


def _reference(model, batches, *, lr, factors, wd, betas, eps, clip):
    """AdamW with decoupled weight decay (none on 1-D tensors), clipping to global norm `clip`, by hand."""
    params = list(model.parameters())
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    b1, b2 = betas
    for t, (batch, f) in enumerate(zip(batches, factors), 1):
        grads = torch.autograd.grad(_loss(model, batch), params)
        norm = math.sqrt(sum(float((g * g).sum()) for g in grads))
        grads = [g * min(1.0, clip / (norm + 1e-6)) for g in grads]
        with torch.no_grad():
            for p, g, mi, vi in zip(params, grads, m, v):
                step_lr = lr * f
                p.mul_(1 - step_lr * (wd if p.ndim >= 2 else 0.0))
                mi.mul_(b1).add_((1 - b1) * g)
                vi.mul_(b2).add_((1 - b2) * g * g)
                p.sub_(step_lr * (mi / (1 - b1**t)) / ((vi / (1 - b2**t)).sqrt() + eps))
    return model


@pytest.mark.parametrize(
    "style, factors",
    [
        # fine-tuning: transformers' schedule, warm-up from lr 0 (W = 2 of T = 4 steps), then decay to 0 at T
        ("finetune", [0.0, 0.5, 1.0, 0.5]),
        # pre-training: the same decay, warm-up one step earlier (step k uses (k+1)/W)
        ("pretrain", [0.5, 1.0, 1.0, 0.5]),
    ],
)
def test_loop_matches_hand_rolled_adamw_schedule_and_clipping(style, factors):
    kw = dict(
        lr=0.05,
        wd=0.1,
        clip=0.5,
        betas=(0.9, 0.98) if style == "pretrain" else (0.9, 0.999),
        eps=1e-6 if style == "pretrain" else 1e-8,
    )
    batches = _batches()
    model = _model()
    ref = _reference(copy.deepcopy(model), batches, factors=factors, **kw)
    run = train(
        model,
        iter(batches),
        lambda b: _loss(model, b),
        total_steps=4,
        lr=kw["lr"],
        warmup=0.5,
        weight_decay=kw["wd"],
        grad_clip=kw["clip"],
        betas=kw["betas"],
        eps=kw["eps"],
        warmup_from_zero=style == "finetune",
    )
    assert run.lrs == pytest.approx([kw["lr"] * f for f in factors], abs=1e-15)
    assert len(run.losses) == 4 and run.skipped == 0
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12, msg=name)
    assert not torch.equal(model[0].weight, _model()[0].weight)  # it did train


def test_schedules_step_by_step():
    def used(warmup, total, **kw):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        sched = make_schedule(opt, warmup, total, **kw)
        lrs = []
        for _ in range(total):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return lrs, opt.param_groups[0]["lr"]

    lrs, end = used(0.0, 10)  # no warm-up: full lr at the first step, 0 once every step is done
    assert lrs == pytest.approx([0.1 * (10 - k) / 10 for k in range(10)], abs=1e-12) and end == 0.0
    lrs, _ = used(0.2, 10)  # 2 warm-up steps from 0 (as HF), then decay over the other 8
    assert lrs == pytest.approx([0.0, 0.05, 0.1, 0.0875, 0.075, 0.0625, 0.05, 0.0375, 0.025, 0.0125], abs=1e-12)
    lrs, _ = used(0.2, 10, warmup_from_zero=False)  # pre-training's: the warm-up one step earlier
    assert lrs == pytest.approx([0.05, 0.1, 0.1, 0.0875, 0.075, 0.0625, 0.05, 0.0375, 0.025, 0.0125], abs=1e-12)
    with pytest.raises(ValueError, match="warmup must be a fraction"):
        used(1.5, 10)


def test_no_weight_decay_on_biases_and_layernorm():
    model = _model()
    decay, no_decay = param_groups(model, 0.01)
    assert [p.shape for p in decay["params"]] == [(8, 5), (2, 8)]
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 4  # 2 biases, LayerNorm weight + bias


def test_non_finite_loss_names_the_step():
    model = _model()
    batches = _batches()
    losses = iter([1.0, float("nan")])

    def step_loss(b):
        return _loss(model, b) * next(losses)

    with pytest.raises(FloatingPointError, match="non-finite loss at step 1"):
        train(model, iter(batches), step_loss, total_steps=4, lr=0.01, warmup=0.0)


def test_batches_are_drawn_once_per_step_and_must_last():
    pulled = []

    def endless():
        while True:
            pulled.append(len(pulled))
            yield _batches(1)[0]

    model = _model()
    train(model, endless(), lambda b: _loss(model, b), total_steps=3, lr=0.01, warmup=0.0)
    assert pulled == [0, 1, 2]  # nothing drawn past the last step (the data RNG stays in step order)
    with pytest.raises(ValueError, match="ran out after 2 of 3 steps"):
        train(model, iter(_batches(2)), lambda b: _loss(model, b), total_steps=3, lr=0.01, warmup=0.0)


def test_fp16_is_ignored_off_cuda(caplog):
    a, b = _model(), _model()
    with caplog.at_level(logging.INFO):
        train(a, iter(_batches()), lambda x: _loss(a, x), total_steps=4, lr=0.01, warmup=0.0, fp16=True)
    train(b, iter(_batches()), lambda x: _loss(b, x), total_steps=4, lr=0.01, warmup=0.0)
    assert "fp16 requested but ignored on device cpu" in caplog.text
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
