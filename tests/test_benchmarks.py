"Tests of the pieces of the benchmark scripts that change what they train (the scripts themselves are run by hand)."
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parents[1] / 'benchmarks'))
from bench_fashion_mnist import EMAS, SAMS, ResizeS, optimizer, zero_residual_bn  # noqa: E402
from bench_learner import resetter  # noqa: E402

from nntrain.learner import Learner, Subscriber  # noqa: E402
from nntrain.resnet import MixedPrecisionS, resnet  # noqa: E402

class SizeRecorder(Subscriber):
    order = 95  # after ResizeS
    def __init__(self): self.seen = []
    def before_batch(self, learn): self.seen.append((learn.epoch, learn.training, learn.batch[0].shape[-1]))

def test_resize_follows_its_schedule_and_leaves_evaluation_alone():
    data = [[torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))]]
    class DLs: train = valid = data
    model = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4, 10))
    rec = SizeRecorder()
    Learner(model, DLs(), F.cross_entropy, torch.optim.SGD, 0.1, [ResizeS('22:3,18:1'), rec]).fit(4)
    train = [(e, size) for e, training, size in rec.seen if training]
    assert train == [(0, 18), (1, 22), (2, 22), (3, 28)]
    assert {size for _, training, size in rec.seen if not training} == {28}

def test_resetter_restores_weights_in_place():
    model = nn.Linear(3, 2)
    reset, before = resetter(model), [p.detach().clone() for p in model.parameters()]
    ptrs = [p.data_ptr() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters(): p.add_(1)
    assert reset() is model
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert [p.data_ptr() for p in model.parameters()] == ptrs  # the same tensors, at the same addresses

class WeightRecorder(Subscriber):
    order = 2000  # after EMAS
    def __init__(self): self.seen = []
    def after_step(self, learn): self.seen.append(learn.model.weight.detach().clone())

def test_ema_averages_the_weights_after_every_step():
    data = [[torch.randn(8, 3), torch.randint(0, 2, (8,))] for _ in range(5)]
    class DLs: train, valid = data, []
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    start, ema, rec = model.weight.detach().clone(), EMAS(0.9), WeightRecorder()
    Learner(model, DLs(), F.cross_entropy, torch.optim.SGD, 0.5, [ema, rec]).fit(1)
    expected = rec.seen[0]  # torch's AveragedModel starts from the weights after the first step
    for w in rec.seen[1:]: expected = 0.9 * expected + 0.1 * w
    assert len(rec.seen) == 5 and not torch.allclose(rec.seen[-1], start)
    assert torch.allclose(ema.model.module.weight, expected, atol=1e-6)
    assert not torch.allclose(ema.model.module.weight, model.weight)  # kept apart from the trained weights

def test_optimizer_settings():
    assert optimizer(dict(optimizer='adam', wd=0.)) is torch.optim.Adam
    sgd = optimizer(dict(optimizer='sgd', wd=5e-4))([nn.Parameter(torch.zeros(1))], lr=0.1)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults['nesterov'] and sgd.defaults['weight_decay'] == 5e-4
    adamw = optimizer(dict(optimizer='adamw', wd=0.01))([nn.Parameter(torch.zeros(1))], lr=0.1)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults['weight_decay'] == 0.01
    try: optimizer(dict(optimizer='lamb', wd=0.))
    except SystemExit as e: assert 'lamb' in str(e)
    else: raise AssertionError('an unknown optimizer should stop the benchmark')

def test_zero_residual_bn_starts_every_block_as_its_shortcut():
    model = zero_residual_bn(resnet())
    x = torch.randn(4, 1, 28, 28)
    for block in list(model)[:6]:
        assert torch.equal(block(x), torch.relu(block.shortcut(x)))  # the convolutional path adds exactly 0
        x = block(x)
    assert sum(p.numel() for p in model.parameters()) == 1_227_900  # the same model, only started differently

class GradRecorder(Subscriber):
    order = 60  # after SAMS, before the step
    def after_backward(self, learn):
        self.weight, self.grad = learn.model.weight.detach().clone(), learn.model.weight.grad.clone()

def test_sam_steps_with_the_gradient_at_the_moved_weights():
    torch.manual_seed(0)
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    class DLs: train, valid = [[x, y]], []
    model = nn.Linear(3, 2, bias=False)
    w0 = model.weight.detach().clone()
    w = w0.clone().requires_grad_()
    g0, = torch.autograd.grad(F.cross_entropy(x @ w.T, y), w)
    moved = (w0 + 0.5 * g0 / g0.norm()).requires_grad_()
    g_moved, = torch.autograd.grad(F.cross_entropy(x @ moved.T, y), moved)
    rec = GradRecorder()
    Learner(model, DLs(), F.cross_entropy, torch.optim.SGD, 0.1, [SAMS(0.5), rec]).fit(1)
    assert torch.allclose(rec.weight, w0, atol=1e-7)  # the weights are back where they were (w + m - m, to rounding)
    assert torch.allclose(rec.grad, g_moved, atol=1e-6) and not torch.allclose(rec.grad, g0, atol=1e-3)
    assert torch.allclose(model.weight, w0 - 0.1 * g_moved, atol=1e-6)


def test_sam_reruns_under_the_first_pass_autocast_and_refuses_a_grad_scaler():
    torch.manual_seed(0)
    class DLs: train, valid = [[torch.randn(8, 3), torch.randint(0, 2, (8,))]], []
    seen = []
    model = nn.Linear(3, 2)
    model.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    Learner(model, DLs(), F.cross_entropy, torch.optim.SGD, 0.1, [MixedPrecisionS(torch.bfloat16), SAMS(0.05)]).fit(1)
    assert seen == [torch.bfloat16, torch.bfloat16]  # both passes of the one batch in bf16
    seen.clear()
    Learner(model, DLs(), F.cross_entropy, torch.optim.SGD, 0.1, [SAMS(0.05)]).fit(1)
    assert seen == [torch.float32, torch.float32]  # no MixedPrecisionS: both in fp32
    try: Learner(model, DLs(), F.cross_entropy, torch.optim.SGD, 0.1, [MixedPrecisionS(grad_scaler=True), SAMS(0.05)]).fit(1)
    except ValueError as e: assert 'GradScaler' in str(e)
    else: raise AssertionError('SAMS with a GradScaler should fail')
