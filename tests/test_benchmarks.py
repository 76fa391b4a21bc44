"Tests of the pieces of the benchmark scripts that change what they train (the scripts themselves are run by hand)."
import sys
import warnings
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parents[1] / 'benchmarks'))
from bench_fashion_mnist import (EMAS, SAMS, AlternatingFlipS, AugmentOffS, ResizeS, UpsampleS, optimizer, recalibrated_bn,  # noqa: E402
                                 mixing, schedule, zero_residual_bn)
from bench_fast_path import make_variants  # noqa: E402
from bench_learner import learner_loop, plain_loop, resetter  # noqa: E402

from nntrain.learner import Learner, Subscriber  # noqa: E402
from nntrain.resnet import AugmentS, ChannelsLastS, CompileS, CPUAllocatorS, CutMixS, MixedPrecisionS, MixUpS, resnet  # noqa: E402

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

def test_plain_loop_with_the_check_trains_like_the_learner_and_stops_on_nan():
    torch.manual_seed(0)
    batches = [[torch.randn(8, 5), torch.randint(0, 3, (8,))] for _ in range(4)]
    weights = {}
    for name, loop in (('plain', plain_loop), ('checked', partial(plain_loop, check_finite=True)), ('learner', learner_loop)):
        torch.manual_seed(1)
        model = nn.Linear(5, 3)
        loop(model, batches, 2, 0.1)
        weights[name] = model.weight.detach()
    assert torch.equal(weights['plain'], weights['checked']) and torch.allclose(weights['plain'], weights['learner'])
    bad = batches[:1] + [[torch.full((8, 5), float('nan')), batches[1][1]]]
    model = nn.Linear(5, 3)
    w0 = model.weight.detach().clone()
    try: plain_loop(model, bad, 1, 0.1, check_finite=True)
    except FloatingPointError as e: assert 'nan' in str(e)
    else: raise AssertionError('the checked loop should stop on a nan loss')
    assert torch.isfinite(model.weight).all() and not torch.equal(model.weight, w0)  # stopped before the bad step
    plain_loop(model, bad, 1, 0.1)  # unchecked: trains on into nan weights
    assert torch.isnan(model.weight).all()

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
    assert adamw.defaults['betas'] == (0.9, 0.999)
    adamw99 = optimizer(dict(optimizer='adamw', wd=0.01, beta2=0.99))([nn.Parameter(torch.zeros(1))], lr=0.1)
    assert adamw99.defaults['betas'] == (0.9, 0.99) and adamw99.defaults['weight_decay'] == 0.01
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
    import nntrain.resnet as resnet_mod  # on a CPU without bf16 instructions, MixedPrecisionS() trains in fp32: so must SAMS
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        mp.setattr(resnet_mod, 'cpu_has_fast_bf16', lambda: False); warnings.simplefilter('ignore')
        seen.clear()
        Learner(model, DLs(), F.cross_entropy, torch.optim.SGD, 0.1, [MixedPrecisionS(), SAMS(0.05)]).fit(1)
        assert seen == [torch.float32, torch.float32]
    try: Learner(model, DLs(), F.cross_entropy, torch.optim.SGD, 0.1, [MixedPrecisionS(torch.bfloat16, grad_scaler=True), SAMS(0.05)]).fit(1)
    except ValueError as e: assert 'GradScaler' in str(e)
    else: raise AssertionError('SAMS with a GradScaler should fail')

def test_upsample_reaches_training_and_evaluation_before_augmentation():
    data = [[torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))]]
    class DLs: train = valid = data
    seen_by_aug, rec = [], SizeRecorder()
    aug = AugmentS(lambda x: seen_by_aug.append(x.shape[-1]) or x)
    model = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4, 10))
    Learner(model, DLs(), F.cross_entropy, torch.optim.SGD, 0.1, [aug, UpsampleS(32), rec]).fit(2)
    assert {size for _, _, size in rec.seen} == {32} and {training for _, training, _ in rec.seen} == {True, False}
    assert seen_by_aug == [32, 32]  # augmentation (training only) sees the upsampled images
    x = torch.rand(2, 1, 28, 28)
    up = UpsampleS(32)
    class L: batch = [x, None]
    up.before_batch(L)
    assert torch.allclose(L.batch[0], F.interpolate(x, size=(32, 32), mode='bilinear', align_corners=False))

def test_augment_off_skips_the_last_epochs_and_restores_the_transform():
    data = [[torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,))]]
    class DLs: train, valid = data, []
    calls = []
    def transform(x): calls.append(len(calls)); return x
    aug = AugmentS(transform)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    learn = Learner(model, DLs(), F.cross_entropy, torch.optim.SGD, 0.1, [aug, AugmentOffS(aug, 2)])
    learn.fit(5)
    assert len(calls) == 3  # epochs 0, 1 and 2 of 5; not 3 and 4
    assert aug.transform is transform  # back in place after the fit
    learn.fit(1)
    assert len(calls) == 3  # a 1-epoch fit is all "last 2 epochs"

def test_recalibrated_bn_averages_the_statistics_of_the_data_and_keeps_the_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3)).eval()
    with torch.no_grad(): model[1].running_mean.fill_(5.); model[1].weight.fill_(2.)
    batches = [(torch.randn(6, 1, 8, 8) + i, None) for i in range(3)]
    recal = recalibrated_bn(model, batches, lambda x: x * 2, amp=False)
    with torch.no_grad(): feats = [model[0](x * 2) for x, _ in batches]
    expected = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)  # equal batches: the mean of the batch means
    assert torch.allclose(recal[1].running_mean, expected, atol=1e-5)
    assert not recal.training and recal[1].num_batches_tracked == 3
    assert torch.equal(recal[1].weight, model[1].weight) and torch.equal(recal[0].weight, model[0].weight)
    assert torch.equal(model[1].running_mean, torch.full((3,), 5.))  # the original model is left as it was

def test_schedule_peaks_after_pct_start_of_the_steps():
    for pct, peak_step in ((0.3, 29), (0.2, 19)):
        opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=0.01)
        sched = schedule(dict(lr=0.01, pct_start=pct), 100)(opt)
        lrs = []
        for _ in range(100): lrs.append(opt.param_groups[0]['lr']); opt.step(); sched.step()
        assert max(range(100), key=lrs.__getitem__) == peak_step and abs(max(lrs) - 0.01) < 1e-9

def test_mixing_settings():
    assert mixing(dict(mixup=0., cutmix=0.)) == []
    mix, = mixing(dict(mixup=0.2, cutmix=0.))
    assert type(mix) is MixUpS and (mix.alpha, mix.p) == (0.2, 1.)
    cut, = mixing(dict(mixup=0., cutmix=1., mix_p=0.5))
    assert type(cut) is CutMixS and (cut.alpha, cut.p) == (1., 0.5)

def test_step_profile_finds_every_convolution_with_its_input_and_counts_its_macs():
    from torch.utils.flop_counter import FlopCounterMode
    from bench_step_profile import conv_inputs, conv_macs, fast_model
    model, x = fast_model(), torch.randn(4, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    seen = conv_inputs(model, x)
    assert len(seen) == sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 18
    assert not any(m._forward_pre_hooks for m in model.modules())  # no hooks left behind
    first = [n for n, (_, shape, _, _, grad) in seen.items() if not grad]
    assert sorted(first) == ['0.conv_conn.0.0', '0.identity_conn.0']  # only the two reading the images need no input grad
    assert all(shape[1] == conv.in_channels for conv, shape, *_ in seen.values())
    assert all(dtype == (torch.float32 if n in first else torch.bfloat16) for n, (_, _, dtype, _, _) in seen.items())
    with FlopCounterMode(display=False) as fc:
        for conv, shape, dtype, stride, _ in seen.values(): conv(torch.zeros(shape))
    assert sum(conv_macs(conv, shape) for conv, shape, *_ in seen.values()) == fc.get_total_flops() // 2

def test_step_profile_floor_is_the_convolutions_time_for_the_epochs():
    from bench_step_profile import profile_step
    res = profile_step(bs=8, threads=1, steps=2, epochs=3)
    assert len(res['convs']) == 18 and res['steps_per_epoch'] == 7500
    assert abs(res['conv_floor_s'] - res['conv_step_s'] * 7500 * 3) < 1e-9
    assert all(c['forward_s'] > 0 and c['step_s'] > 0 for c in res['convs'])
    assert abs(res['conv_step_s'] - sum(c['step_s'] for c in res['convs'])) < 1e-12  # the convolutions' times add up
    # times measured apart (each convolution alone, the whole step) are compared by the benchmark's runs, not here: at batch
    # size 8 the convolutions take 80-90% of a step, so on a busy machine their separately timed sum can pass the step's time
    assert res['step_s'] > 0 and res['optimizer_step_s'] > 0 and res['conv_share'] > 0 and 'compiled_step_s' not in res

def test_step_profile_times_a_real_convolution_forward_and_backward():
    # what the timed callables run, op by op (not how long): the floor is only the convolutions' time if they run them
    from collections import Counter
    from torch.utils._python_dispatch import TorchDispatchMode
    from bench_step_profile import conv_fns, conv_inputs, fast_model
    class Ops(TorchDispatchMode):
        def __init__(self): super().__init__(); self.ops = Counter()
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops[func.overloadpacket.__name__] += 1
            return func(*args, **(kwargs or {}))
    model, x = fast_model(), torch.randn(4, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    for name, (conv, *like) in conv_inputs(model, x).items():
        forward, forward_backward = conv_fns(conv, *like)
        with Ops() as fwd: forward()
        with Ops() as both: forward_backward()
        assert (fwd.ops['convolution'], fwd.ops['convolution_backward']) == (1, 0), (name, fwd.ops)
        assert (both.ops['convolution'], both.ops['convolution_backward']) == (1, 1), (name, both.ops)

def test_step_profile_median_of_runs_takes_every_time_as_the_median():
    from bench_step_profile import median_of_runs
    def run(t): return dict(step_s=t, optimizer_step_s=t / 10, steps_per_epoch=10, epochs=2,
                            convs=[dict(name='a', forward_s=t / 4, step_s=t / 2), dict(name='b', forward_s=t / 8, step_s=t / 4)])
    res = median_of_runs([run(1.), run(3.), run(2.)])
    assert (res['step_s'], res['optimizer_step_s']) == (2., 0.2)
    assert [(c['name'], c['forward_s'], c['step_s']) for c in res['convs']] == [('a', 0.5, 1.), ('b', 0.25, 0.5)]
    assert res['conv_step_s'] == 1.5 and res['conv_floor_s'] == 1.5 * 10 * 2
    assert [r['step_s'] for r in res['runs']] == [1., 3., 2.]  # every run's own figures kept


def test_alternating_flip_mirrors_each_image_every_other_epoch_whatever_its_batch():
    class Rec(Subscriber):
        order = 100
        def before_fit(self, learn): self.seen = []
        def before_batch(self, learn):
            if learn.training: self.seen.append(learn.batch[0].clone())
    torch.manual_seed(0)
    x = torch.randint(0, 256, (16, 1, 28, 28)).float() / 255  # pixels as the loader gives them: multiples of 1/255
    y = torch.zeros(16, dtype=torch.long)
    class DLs: train, valid = [[x[:8], y[:8]], [x[8:], y[8:]]], []
    rec = Rec()
    Learner(nn.Sequential(nn.Flatten(), nn.Linear(784, 2)), DLs(), F.cross_entropy, torch.optim.SGD, 0.1,
            [AlternatingFlipS(), rec]).fit(3)
    flipped = [torch.cat(rec.seen[2 * e:2 * e + 2]).ne(x).flatten(1).any(1) for e in range(3)]
    assert (flipped[0] ^ flipped[1]).all() and (flipped[0] == flipped[2]).all()  # every other epoch
    assert 0 < flipped[0].sum() < 16  # some images start mirrored, some not
    perm = torch.randperm(16)  # the same image gets the same bit in another batch, at another position
    rec2 = Rec()
    class DLs2: train, valid = [[x[perm], y]], []
    Learner(nn.Sequential(nn.Flatten(), nn.Linear(784, 2)), DLs2(), F.cross_entropy, torch.optim.SGD, 0.1,
            [AlternatingFlipS(), rec2]).fit(1)
    assert torch.equal(rec2.seen[0].ne(x[perm]).flatten(1).any(1), flipped[0][perm])

def test_fast_path_benchmark_times_the_compiled_fast_path_that_fast_path_gives():
    "On a CPU without bf16 instructions `fast_path()` trains in fp32, so `--compile` times that too, besides compiled bf16."
    kinds = lambda subs: [type(s) for s in subs]
    cpu = torch.device('cpu')
    assert 'Learner amp + channels_last + allocator + compile' not in make_variants(cpu)
    slow = make_variants(cpu, compile=True, fast_bf16=False)
    compiled_fp32 = slow['Learner channels_last + allocator fp32 + compile']()
    assert kinds(compiled_fp32) == [ChannelsLastS, CPUAllocatorS, CompileS]
    compiled_amp = slow['Learner amp + channels_last + allocator + compile']()
    assert kinds(compiled_amp) == [MixedPrecisionS, ChannelsLastS, CPUAllocatorS, CompileS]
    assert compiled_amp[0].dtype == torch.bfloat16  # the amp rows insist on bf16 on any CPU
    fast = make_variants(cpu, compile=True, fast_bf16=True)  # with bf16 instructions fast_path() is the amp row: no fp32 row
    assert 'Learner amp + channels_last + allocator + compile' in fast
    assert 'Learner channels_last + allocator fp32 + compile' not in fast
    assert list(fast) == [k for k in slow if k != 'Learner channels_last + allocator fp32 + compile']
    assert slow['plain loop fp32'] is None

def test_lr_finder_benchmark_reports_the_search_the_command_runs():
    from bench_lr_finder import search
    from nntrain.dataloaders import load_fashion_mnist_sample
    res = search(load_fashion_mnist_sample(), seed=1)
    assert res['suggestion'] == pytest.approx(res['minimum'] / 10) and res['trouble'] is None
    assert res['lrs'][0] == pytest.approx(1e-6) and res['lrs'] == sorted(res['lrs']) and len(res['lrs']) == len(res['losses'])
    assert res['minimum'] in res['lrs'] and res['steepest'] in res['lrs'] and res['steepest'] <= res['minimum']
    assert search(load_fashion_mnist_sample(), seed=1)['losses'] == res['losses']  # seeded: the same search again

def test_frameworks_benchmark_trains_every_library_alike():
    "The libraries' times only compare if they do the same work: from the same weights, the same weights after training."
    from bench_frameworks import check, installed
    for model in ('mlp', 'resnet'):
        diffs, moved = check(model, steps=2, threads=1, log=lambda *a: None)
        assert set(diffs) == {f for f in ('plain', 'nntrain', 'lightning', 'fastai') if installed(f)} >= {'plain', 'nntrain'}
        assert all(d == 0 for d in diffs.values()), diffs
        assert min(moved.values()) > 1e-4 and len(set(moved.values())) == 1  # they trained, and alike

def test_frameworks_benchmark_times_steps_after_the_first():
    import time
    from bench_frameworks import StampedBatches
    stamped = StampedBatches([0, 1, 2, 3])
    for b in stamped: time.sleep(0.2 if b == 0 else 0.01)  # the first step is slow: it is left out
    assert len(stamped.stamps) == 5 and 0.009 < stamped.step_time() < 0.05
    assert list(stamped) == [0, 1, 2, 3] and len(stamped) == 4  # iterable again, with fresh stamps

def test_frameworks_benchmark_measures_each_variant_in_a_fresh_process():
    from bench_frameworks import run_one
    for variant in (('mlp', 'nntrain', False), ('resnet', 'nntrain', True)):
        assert 0 < run_one(variant, steps=3, threads=1) < 10
    with pytest.raises(RuntimeError, match='failed'): run_one(('mlp', 'no-such-library', False), steps=3, threads=1)

def test_frameworks_benchmark_ratios_are_to_the_plain_fp32_loop_of_the_same_model_and_round(monkeypatch):
    import bench_frameworks
    fake = {('mlp', 'plain', False): [1., 2.], ('mlp', 'nntrain', False): [1.1, 2.4], ('resnet', 'plain', False): [10., 10.],
            ('resnet', 'nntrain', True): [5., 4.]}
    calls = {v: iter(ts) for v, ts in fake.items()}
    monkeypatch.setattr(bench_frameworks, 'run_one', lambda v, steps, threads: next(calls[v]))
    rows = {r['variant']: r for r in bench_frameworks.benchmark(list(fake), rounds=2, steps=None, threads=1, log=lambda *a: None)}
    assert rows['mlp nntrain fp32']['ratios'] == pytest.approx([1.1, 1.2])
    assert rows['mlp nntrain fp32']['ratio_to_plain_fp32'] == pytest.approx(1.15)
    assert rows['resnet nntrain fast path']['ratios'] == pytest.approx([0.5, 0.4])
    assert rows['resnet plain fp32']['median_ms_per_step'] == pytest.approx(10_000)

def test_frameworks_benchmark_merges_runs_round_by_round():
    from bench_frameworks import merge
    def run(plain, lit):
        return dict(rounds=len(plain), n_runs=1, rows=[dict(model='mlp', framework='plain', fast=False, ms_per_step=plain),
                                                       dict(model='mlp', framework='lightning', fast=False, ms_per_step=lit)])
    res = merge([run([1., 2.], [1.5, 2.2]), run([1.], [1.6])])
    assert (res['rounds'], res['n_runs']) == (3, 2)
    lit = res['rows'][1]
    assert lit['ratios'] == pytest.approx([1.5, 1.1, 1.6]) and lit['ratio_to_plain_fp32'] == pytest.approx(1.5)
    assert lit['variant'] == 'mlp lightning fp32' and lit['median_ms_per_step'] == pytest.approx(1.6)
    with pytest.raises(ValueError, match='different variants'): merge([run([1.], [1.]), dict(rounds=1, rows=[])])
