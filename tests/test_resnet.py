"Tests of nntrain.resnet that need more than a notebook cell: torch.compile, a GPU, exact repeats of whole fits."
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nntrain.learner import Learner, Subscriber
from nntrain.resnet import (AugmentS, ChannelsLastS, CompileS, CutMixS, MixedPrecisionS, MixUpS, ModelMonitorS,
                            RandomCrop, RandomErasing, RandomFlip, resnet)

class DLs:
    def __init__(self, batches): self.train = self.valid = batches

def batches(n=2, bs=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [[torch.rand(bs, 1, 28, 28, generator=g), torch.randint(0, 10, (bs,), generator=g)] for _ in range(n)]

def fit_weights(subs, seed=0):
    torch.manual_seed(seed)
    learn = Learner(resnet(), DLs(batches()), F.cross_entropy, torch.optim.SGD, 0.01, subs)
    learn.fit(1)
    return torch.cat([p.detach().flatten() for p in learn.model.parameters()])

def test_seeded_fits_repeat_with_every_augmentation():
    for mix in (MixUpS, CutMixS):  # one mixing subscriber per fit
        make = lambda: [AugmentS(nn.Sequential(RandomFlip(), RandomCrop(2), RandomErasing(p=1))), mix()]
        assert torch.equal(fit_weights(make()), fit_weights(make()))
        assert not torch.equal(fit_weights(make(), seed=0), fit_weights(make(), seed=1))

def test_per_sample_randomness():
    torch.manual_seed(0)
    x = torch.arange(784.).view(1, 1, 28, 28).repeat(64, 1, 1, 1)
    for t in (RandomFlip(), RandomCrop(3), RandomErasing(p=1)):
        out = t(x)
        assert len({o.flatten()[:784].sum().item() if isinstance(t, RandomErasing) else tuple(o.flatten()[:60].tolist())
                    for o in out}) > 1, t

def test_augmentations_keep_dtype_device_and_layout_of_3d_batches():
    x = torch.rand(8, 28, 28, dtype=torch.float64)
    for t in (RandomFlip(), RandomCrop(2), RandomErasing(p=1)):
        out = t(x)
        assert out.shape == x.shape and out.dtype == x.dtype

def test_torchvision_style_callable_works_with_augments():
    seen = []
    def invert(x): seen.append(x.shape); return 1 - x  # any Callable[[Tensor], Tensor]
    Learner(resnet(), DLs(batches(1)), subs=[AugmentS(invert)]).fit(1)
    assert seen == [torch.Size([16, 1, 28, 28])]  # the training batch only

def test_monitor_removes_hooks_when_a_later_subscriber_fails_in_before_fit():
    class Fail(Subscriber):
        order = 200
        def before_fit(self, learn): raise RuntimeError('setup failed')
    model = resnet()
    with pytest.raises(RuntimeError, match='setup failed'):
        Learner(model, DLs(batches(1)), subs=[ModelMonitorS(), Fail()]).fit(1)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())

def test_monitor_with_fast_path_counts_the_same():
    counts = []
    for subs in ([], [MixedPrecisionS(torch.bfloat16), ChannelsLastS()]):
        mon = ModelMonitorS()
        Learner(resnet(), DLs(batches(1)), subs=[mon, *subs]).fit(1)
        counts.append((mon.total_params, mon.total_macs))
        assert not torch.is_autocast_enabled('cpu')  # the cancelled fit left autocast
    assert counts[0] == counts[1]

def test_bf16_channels_last_computes_like_fp32():
    "bf16 + channels-last gives the fp32 loss to bf16 precision, and gradients pointing the same way."
    from nntrain.activations import init_weights
    torch.manual_seed(0)
    x, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    out = {}
    for name, subs in (('fp32', []), ('fast', [MixedPrecisionS(torch.bfloat16), ChannelsLastS()])):
        torch.manual_seed(0)
        model = resnet().apply(init_weights)
        class Grab(Subscriber):
            order = 200
            def after_backward(self, learn):
                out[name] = (learn.loss.item(), torch.cat([p.grad.flatten() for p in learn.model.parameters()]))
        Learner(model, DLs([[x, y]]), subs=[*subs, Grab()]).fit(1, valid=False)
    (l32, g32), (l16, g16) = out['fp32'], out['fast']
    assert abs(l16 - l32) / l32 < 0.01
    assert F.cosine_similarity(g32, g16, dim=0) > 0.9

@pytest.mark.parametrize('fast_bf16', [True, False])
def test_default_dtype_on_cpu_follows_the_bf16_instructions(monkeypatch, fast_bf16):
    "MixedPrecisionS() autocasts to bf16 only on a CPU with bf16 instructions; elsewhere it trains in fp32 and says so."
    import nntrain.resnet as resnet_mod
    monkeypatch.setattr(resnet_mod, 'cpu_has_fast_bf16', lambda: fast_bf16)
    seen = []
    model = resnet()
    model[-2].register_forward_hook(lambda m, i, out: seen.append(out.dtype))  # the Linear layer's output
    mp = MixedPrecisionS()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        Learner(model, DLs(batches(1)), subs=[mp]).fit(1)
    want = torch.bfloat16 if fast_bf16 else torch.float32
    assert seen == [want, want] and mp.amp_dtype == (torch.bfloat16 if fast_bf16 else None)
    assert [str(w.message) for w in caught if 'MixedPrecisionS' in str(w.message)] == ([] if fast_bf16 else [resnet_mod._NO_FAST_BF16])
    assert not torch.is_autocast_enabled('cpu')
    seen.clear()
    Learner(model, DLs(batches(1)), subs=[MixedPrecisionS(torch.bfloat16)]).fit(1)  # an explicit dtype is obeyed
    assert seen == [torch.bfloat16, torch.bfloat16]

def test_cpu_has_fast_bf16_answers_from_the_cpu(monkeypatch):
    import nntrain.resnet as resnet_mod
    assert isinstance(resnet_mod.cpu_has_fast_bf16(), bool)
    monkeypatch.setattr(resnet_mod.platform, 'machine', lambda: 'x86_64')
    for avx512_bf16, amx in ((False, False), (True, False), (False, True)):
        monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported', lambda: avx512_bf16, raising=False)
        monkeypatch.setattr(torch.cpu, '_is_amx_tile_supported', lambda: amx, raising=False)
        assert resnet_mod.cpu_has_fast_bf16() == (avx512_bf16 or amx)
    monkeypatch.setattr(resnet_mod.platform, 'machine', lambda: 'aarch64')
    for flags, want in (({'fp', 'asimd', 'bf16'}, True), ({'fp', 'asimd'}, False), (set(), False)):
        monkeypatch.setattr(resnet_mod, '_arm_cpu_features', lambda: flags)
        assert resnet_mod.cpu_has_fast_bf16() == want
    monkeypatch.setattr(resnet_mod.platform, 'machine', lambda: 'riscv64')
    assert resnet_mod.cpu_has_fast_bf16() is False

_COMPILE_PROBES = {}

def skip_unless_compile_works(backend=None):
    "Skip when torch.compile (with `backend`, default inductor) fails on a trivial function here; a fit's own errors then fail the test."
    if backend not in _COMPILE_PROBES:
        try:
            out = torch.compile(lambda x: x * 2 + 1, **({} if backend is None else dict(backend=backend)))(torch.ones(3))
            _COMPILE_PROBES[backend] = None if torch.equal(out, torch.full((3,), 3.)) else f'wrong result {out}'
        except Exception as e: _COMPILE_PROBES[backend] = repr(e)
    if _COMPILE_PROBES[backend] is not None: pytest.skip(f'torch.compile is not available here: {_COMPILE_PROBES[backend]}')

class RecordingLearner(Learner):
    "A Learner whose own predict records the type of the module it runs (CompileS swaps in the compiled one around it)."
    def predict(self):
        self.ran = getattr(self, 'ran', []) + [type(self.model).__name__]
        super().predict()

def test_compile_matches_eager():
    skip_unless_compile_works()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 28 * 28, 10))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    data = batches(2, 8)
    compiled_learn = RecordingLearner(model, DLs(data), subs=[CompileS()])
    compiled_learn.fit(1)
    assert compiled_learn.ran == ['OptimizedModule'] * 4  # 2 training and 2 validation batches ran through the compiled module
    assert 'predict' not in compiled_learn.__dict__ and compiled_learn.model is model
    compiled = torch.cat([p.detach().flatten() for p in model.parameters()])
    model.load_state_dict(state)
    learn = Learner(model, DLs(data))
    learn.fit(1)
    assert 'predict' not in learn.__dict__
    torch.testing.assert_close(compiled, torch.cat([p.detach().flatten() for p in model.parameters()]), rtol=1e-4, atol=1e-5)

def test_compile_runs_the_learners_own_predict_and_gives_it_back():
    skip_unless_compile_works('eager')
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    learn = Learner(model, DLs(batches(2, 8)))
    seen = []
    def own_predict():
        seen.append((type(learn.model).__name__, learn.training))
        learn.preds = learn.model(learn.batch[0]) * 2
    learn.predict = own_predict
    learn.fit(1, subs=[CompileS(backend='eager')])
    assert seen == [('OptimizedModule', True)] * 2 + [('OptimizedModule', False)] * 2  # train, then eval: compiled both times
    assert learn.predict is own_predict and learn.model is model
    seen.clear()
    learn.fit(1, subs=[CompileS(eval=False, backend='eager')])
    assert seen == [('OptimizedModule', True)] * 2 + [('Sequential', False)] * 2 and learn.predict is own_predict
    plain = Learner(model, DLs(batches(2, 8)))
    plain.fit(1, subs=[CompileS(backend='eager')])
    assert 'predict' not in plain.__dict__  # the class's predict again
    with pytest.raises(ValueError, match='subscribe one CompileS'): plain.fit(1, subs=[CompileS(backend='eager'), CompileS(backend='eager')])
    assert 'predict' not in plain.__dict__

def test_get_preds_during_a_compiled_fit_predicts_the_validation_data():
    "CompileS's predict is fit_only: get_preds's learner copy runs its own, on the validation batches, not the fit's batch."
    skip_unless_compile_works('eager')
    torch.manual_seed(0)
    xt, yt, xv, yv = torch.randn(8, 16), torch.randint(0, 4, (8,)), torch.randn(4, 16), torch.randint(0, 4, (4,))
    class Score(Subscriber):
        def after_epoch(self, learn):
            if learn.training: self.preds, self.targets = learn.get_preds()
    dls = DLs([[xt, yt]])
    dls.valid = [[xv, yv]]
    learn, score = Learner(nn.Linear(16, 4), dls, subs=[CompileS(backend='eager')]), Score()
    learn.fit(1, subs=[score])
    assert score.preds.shape == (4, 4) and torch.equal(score.targets, yv)
    with torch.no_grad(): torch.testing.assert_close(score.preds, learn.model.eval()(xv), rtol=1e-5, atol=1e-6)
    assert 'predict' not in learn.__dict__

def test_get_preds_during_a_compiled_fit_runs_the_predict_set_on_the_learner():
    "The copy runs what CompileS's fit_only predict wrapped: a predict the user set on the learner, not the class's."
    skip_unless_compile_works('eager')
    from types import MethodType
    torch.manual_seed(0)
    xt, yt = torch.randn(8, 16), torch.randint(0, 4, (8,))
    class Score(Subscriber):
        def after_epoch(self, learn):
            if learn.training: self.mid = learn.get_preds()[0]
    learn, score = Learner(nn.Linear(16, 4), DLs([[xt, yt]]), lr=0.), Score()  # lr 0: the weights stay
    def doubled(self): self.preds = self.model(self.batch[0]) * 2  # the learner's own predict: scaled logits, say
    learn.predict = own = MethodType(doubled, learn)
    learn.fit(1, subs=[CompileS(backend='eager'), score])
    with torch.no_grad(): torch.testing.assert_close(score.mid, learn.model(xt) * 2, rtol=1e-5, atol=1e-6)
    assert learn.predict is own

def test_activation_stats_under_compile_records_the_training_batches():
    "ActivationStatsS's hooks run inside the compiled forward (its mode check once read learn.model there, failing the trace)."
    skip_unless_compile_works('eager')
    from nntrain.activations import ActivationStatsS
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    data = [[torch.randn(8, 16), torch.randint(0, 4, (8,))] for _ in range(3)]
    stats = []
    for subs in ([], [CompileS(backend='eager')]):
        model.load_state_dict(state)
        act = ActivationStatsS([model[0], model[1]], bins=10)
        learn = RecordingLearner(model, DLs(data), subs=subs + [act])
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            learn.fit(2)
        assert not [m for m in w if 'ActivationStatsS' in str(m.message)]
        stats.append(act.stats)
    assert learn.ran == ['OptimizedModule'] * 12  # 2 epochs of 3 training and 3 validation batches, compiled
    plain, compiled = stats
    assert {k: len(v['mean']) for k, v in compiled.items()} == {'0_Linear': 6, '1_ReLU': 6}  # the training batches only
    for name in plain:
        assert torch.equal(compiled[name]['hist'], plain[name]['hist'])
        for key in ('mean', 'std', 'firing'): torch.testing.assert_close(compiled[name][key], plain[name][key])

@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_cuda_mixed_precision(dtype):
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported(): pytest.skip('no bf16 on this GPU')
    from nntrain.learner import DeviceS
    mp = MixedPrecisionS(dtype=dtype)
    class Check(Subscriber):
        order = 100
        def after_predict(self, learn): self.dtype, self.device = learn.preds.dtype, learn.preds.device
    check = Check()
    torch.manual_seed(0)
    learn = Learner(resnet(), DLs(batches()), subs=[DeviceS('cuda'), mp, ChannelsLastS(), check,
                                                     AugmentS(nn.Sequential(RandomFlip(), RandomCrop(2))), CutMixS()])
    learn.fit(1)
    assert check.dtype == dtype and check.device.type == 'cuda'
    assert (mp.scaler is not None) == (dtype == torch.float16)
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())
