"Tests of the pieces of the benchmark scripts that change what they train (the scripts themselves are run by hand)."
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parents[1] / 'benchmarks'))
from bench_fashion_mnist import ResizeS  # noqa: E402
from bench_learner import resetter  # noqa: E402

from nntrain.learner import Learner, Subscriber  # noqa: E402

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
