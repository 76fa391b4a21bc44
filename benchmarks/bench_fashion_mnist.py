"""Train the series' ResNet on the full Fashion-MNIST and report test accuracy, epochs and wall time per seed.

Recipes (all: `resnet()` with Kaiming init, inputs normalized, one-cycle schedule):

- `series`: the series' recipe, for reference: Adam, max lr 1e-2, batch size 1024, flip + crop (padding 1), fp32, 20 epochs.
            (The series applied torchvision's transforms to whole batches: one flip and one crop per batch.
            Here every image gets its own.)
- `best`:   `nntrain.resnet.RECIPE`, the library's recipe (what `nntrain train` trains): AdamW (wd 0.01), max lr 1e-2,
            batch size 128, per-image flip + crop (padding 1), the fast path: bf16 autocast, channels-last and
            CPUAllocatorS. (Until chapter 7's batch-size runs it used batch size 1024: `--bs 1024` runs that.)
- `strong`: `best` at batch size 1024 with more regularization: crop padding 2, random erasing (p 0.25) and label
            smoothing 0.1. It scored lower than `best` at 1024: 20 epochs are too few for it (kept for the record).

`--compile` adds torch.compile (CompileS) to any recipe: the same training in less wall time, once compiled.
`--set KEY=VALUE` changes one setting of a recipe, for probes: e.g. `optimizer=sgd lr=0.1 wd=0.0005` (SGD with Nesterov
momentum 0.9; `wd` is then an L2 penalty), `resize=18:8,22:14` (progressive resizing, see ResizeS), or `ema=0.999`
(also evaluates an exponential moving average of the weights after the last epoch, reported as `ema_acc`), or
`zero_bn=1` (every ResBlock's last BatchNorm starts with scale 0, so each block starts out as its shortcut), or `sam=0.05`
(sharpness-aware minimization with that radius, see SAMS: twice the work per step), or `size=32` (every image, training
and test, upsampled to 32x32, see UpsampleS: the model's strides then halve 32 -> 16 -> 8 -> 4 -> 2 -> 1 exactly), or
`aug_off=2` (no augmentation in the last 2 epochs, see AugmentOffS), or `recal_bn=1` (also evaluates a copy of the final
model whose BatchNorm statistics are recomputed over one pass of the un-augmented training images, reported as
`recal_acc`; see recalibrated_bn), or `pct_start=0.2` (the share of the steps the one-cycle schedule warms up for),
or `beta2=0.99` (Adam's second-moment decay; its beta1 follows the one-cycle schedule), or `mixup=0.2` / `cutmix=1`
(MixUpS / CutMixS with that alpha) with `mix_p=0.5` (the share of the images they mix), or `flip=alt` (each image
mirrored in every other epoch instead of at random, see AlternatingFlipS), or `anneal=linear` (the one-cycle schedule
anneals linearly instead of along a cosine).

Every recipe evaluates the test set after every epoch (`--set eval_every_epoch=0`: only after the last), and
records the first epoch, and the time, at which test accuracy reached the series' 93.9%.

    python benchmarks/bench_fashion_mnist.py --data /path/to/fashion_mnist --recipe best --epochs 20 --seeds 1 2 3 \
        --json benchmarks/results/fashion_mnist_best.json

Training drops the last, partial batch of each epoch (the shuffle leaves out a different 608 images each time): every
step then has the same shape, which mixed-precision kernels on a CPU like. The test set is evaluated in full.
Wall time is the time of `fit` (training and evaluation), not loading the data. The mean over the seeds is the result.
Runs made separately (e.g. one process per seed) are combined with `--merge a.json b.json --json out.json`.

On a shared machine, use --threads 1 or make sure the cores are free: with two OpenMP threads and another busy
process, each step waits on the slower thread and training can slow down many times over.
"""
import argparse, copy, json, os, platform, statistics, sys, time
from functools import partial

import torch
import torch.nn.functional as F
import torcheval.metrics as tem
from torch import nn

from nntrain.acceleration import SchedulerS
from nntrain.activations import NormalizationS, init_weights, set_seed
from nntrain.dataloaders import DataLoaders, load_fashion_mnist, load_fashion_mnist_sample
from nntrain.learner import CancelEpochException, DeviceS, Learner, MetricsS, ProgressS, Subscriber, default_device
from nntrain.resnet import (FASHION_MNIST_STATS, RECIPE, AugmentS, CompileS, CutMixS, MixedPrecisionS, MixUpS, ResBlock,
                            fast_path, recipe_augmentation, recipe_loss, recipe_optimizer, resnet)

BEST = dict(epochs=RECIPE['epochs'], bs=RECIPE['bs'], lr=RECIPE['lr'], wd=RECIPE['wd'], optimizer='adamw', crop=RECIPE['crop'],
            erasing=RECIPE['erasing'], label_smoothing=RECIPE['label_smoothing'], mixup=0., fast_path=True, eval_every_epoch=True,
            resize='', ema=0., zero_bn=False, sam=0., size=0, aug_off=0, recal_bn=False, pct_start=0.3, beta2=0.999, cutmix=0., mix_p=1.)
# settings added after most results were stored: a run records them only where --set changes them (their defaults are
# what every recipe does), so the configs stored before them still compare equal to the recipes'
LATER_SETTINGS = dict(flip='random', anneal='cos')
RECIPES = {
    'series': dict(epochs=20, bs=1024, lr=1e-2, wd=0., optimizer='adam', crop=1, erasing=0., label_smoothing=0., mixup=0.,
                   fast_path=False, eval_every_epoch=True, resize='', ema=0., zero_bn=False, sam=0., size=0, aug_off=0,
                   recal_bn=False, pct_start=0.3, beta2=0.999, cutmix=0., mix_p=1.),
    'best': BEST,
    'strong': {**BEST, 'bs': 1024, 'crop': 2, 'erasing': 0.25, 'label_smoothing': 0.1},
}
EVAL_BS = 1024  # the test set is evaluated whole, in batches of this size, which runs fastest
TARGET = 0.939  # the series' test accuracy after 20 epochs
FMNIST_MEAN, FMNIST_STD = FASHION_MNIST_STATS  # of the 60,000 training images

class LastEpochEvalS(Subscriber):
    "Skips evaluation except after the last epoch: the time goes into training."
    order = 5  # after MetricsS has reset its counts, so the skipped epoch logs nothing
    def before_epoch(self, learn):
        if not learn.training and learn.epoch < learn.n_epochs - 1: raise CancelEpochException()

class ResizeS(Subscriber):
    """Progressive resizing: trains on smaller images in the early epochs. `schedule` is "SIZE:UNTIL,..." (e.g.
    "14:8,20:14": 14x14 images before epoch 8, 20x20 before epoch 14, then the data's own size); evaluation is untouched."""
    order = 90  # after augmentation and normalization, before ChannelsLastS (91)
    def __init__(self, schedule):
        self.steps = sorted((int(until), int(size)) for size, until in (part.split(':') for part in schedule.split(',')))
    def before_batch(self, learn):
        size = next((size for until, size in self.steps if learn.epoch < until), None)
        if learn.training and size is not None:
            learn.batch[0] = F.interpolate(learn.batch[0], size=(size, size), mode='bilinear', antialias=True)

class UpsampleS(Subscriber):
    "Upsamples every batch, training and evaluation, to `size`x`size` (bilinear), before augmentation sees it."
    order = -8  # after DeviceS (-10), before AugmentS (-7)
    def __init__(self, size): self.size = size
    def before_batch(self, learn):
        learn.batch[0] = upsample(learn.batch[0], self.size)

def upsample(x, size):
    "`x` (N, C, H, W) resized to `size`x`size` by bilinear interpolation; unchanged if `size` is 0 or its size already."
    return x if not size or x.shape[-1] == size else F.interpolate(x, size=(size, size), mode='bilinear', align_corners=False)

class AugmentOffS(Subscriber):
    "Turns `augment` (an AugmentS) off for the last `n` epochs of a fit: the model ends on the images it will be tested on."
    order = -9  # before AugmentS (-7) in every batch
    def __init__(self, augment, n): self.augment, self.n, self.transform = augment, n, augment.transform
    def before_epoch(self, learn):
        self.augment.transform = nn.Identity() if learn.epoch >= learn.n_epochs - self.n else self.transform
    def after_fit(self, learn): self.augment.transform = self.transform

@torch.no_grad()
def recalibrated_bn(model, dl, prep, amp):
    """A copy of `model` whose BatchNorm running statistics are the plain averages over the batches of `dl` (passed
    through `prep`, under bf16 autocast if `amp`), recomputed in one pass; the weights are unchanged."""
    model = copy.deepcopy(model)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in norms: bn.reset_running_stats(); bn.momentum = None  # momentum None: a cumulative average
    model.train()
    for x, _ in dl:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp): model(prep(x))
    return model.eval()

class EMAS(Subscriber):
    "Keeps an exponential moving average of the weights (and BatchNorm buffers), updated after every step."
    order = 1000
    def __init__(self, decay): self.decay = decay
    def before_fit(self, learn):
        multi_avg = torch.optim.swa_utils.get_ema_multi_avg_fn(self.decay)
        self.model = torch.optim.swa_utils.AveragedModel(learn.model, multi_avg_fn=multi_avg, use_buffers=True)
    def after_step(self, learn): self.model.update_parameters(learn.model)

class SAMS(Subscriber):
    """Sharpness-aware minimization (Foret et al., 2020): the step uses the gradient taken at the weights moved `rho` (in
    L2 norm) up the batch's gradient, which costs a second forward and backward pass per batch. With `MixedPrecisionS`,
    the second pass runs under the same autocast as the first. BatchNorm's running statistics see the batch twice."""
    order = 50
    def __init__(self, rho): self.rho = rho
    def before_fit(self, learn):
        self.amp = next((s for s in learn.subs if isinstance(s, MixedPrecisionS)), None)
    def after_backward(self, learn):
        if self.amp is not None and self.amp.scaler is not None:
            raise ValueError("SAMS can't take a second backward pass through MixedPrecisionS's GradScaler: use bf16 "
                             "(MixedPrecisionS(torch.bfloat16)) with SAMS.")
        params = [p for p in learn.model.parameters() if p.grad is not None]
        with torch.no_grad():
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
            moves = [p.grad * (self.rho / (norm + 1e-12)) for p in params]
            for p, m in zip(params, moves): p.add_(m)
        learn.opt.zero_grad()
        x, y = learn.batch[:2]
        amp_dtype = self.amp.amp_dtype if self.amp is not None else None  # None: the first pass ran in fp32
        with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = learn.loss_fn(learn.model(x), y)
        loss.backward()
        with torch.no_grad():
            for p, m in zip(params, moves): p.sub_(m)

class AlternatingFlipS(Subscriber):
    """Alternating flip (Jordan, 2024, "94% on CIFAR-10 in 3.29 seconds on a single GPU"): each training image is
    mirrored in every other epoch, instead of by a coin toss each time, so that it is seen both ways round in any two
    epochs in a row. Which epochs mirror an image is fixed by a hash of its pixels (exact integer arithmetic, so the same
    image always gets the same bit). Runs on the raw pixels, before AugmentS crops them."""
    order = -8  # after DeviceS (-10), before AugmentS (-7)
    def before_epoch(self, learn): self.parity = learn.epoch % 2
    def before_batch(self, learn):
        if not learn.training: return
        x = learn.batch[0]
        pixels = (x * 255).round().long().flatten(1)
        if not hasattr(self, 'pattern') or self.pattern.shape[0] != pixels.shape[1]:
            g = torch.Generator().manual_seed(0)
            self.pattern = torch.randint(0, 2 ** 16, (pixels.shape[1],), generator=g).to(x.device)
        flip = ((pixels * self.pattern).sum(1) + self.parity) % 2 == 1
        learn.batch[0] = torch.where(flip.view(-1, *[1] * (x.ndim - 1)), x.flip(-1), x)

class EpochTimerS(Subscriber):
    "Records the seconds since the fit started at the end of every epoch."
    order = 1000
    def before_fit(self, learn): self.t0, self.times = time.perf_counter(), []
    def after_epoch(self, learn): self.times.append((learn.epoch, 'train' if learn.training else 'eval', time.perf_counter() - self.t0))

def zero_residual_bn(model):
    "Starts every ResBlock as its shortcut: the scale of the BatchNorm that ends its convolutional path set to 0."
    for block in model:
        if isinstance(block, ResBlock): nn.init.zeros_(block.conv_conn[-1][1].weight)
    return model

def optimizer(cfg):
    if cfg['optimizer'] == 'adam': return torch.optim.Adam
    if cfg['optimizer'] == 'sgd': return partial(torch.optim.SGD, momentum=0.9, nesterov=True, weight_decay=cfg['wd'])
    if cfg['optimizer'] != 'adamw': sys.exit(f"unknown optimizer {cfg['optimizer']!r}: adam, adamw or sgd")
    adamw = recipe_optimizer(cfg['wd'])
    return adamw if cfg.get('beta2', 0.999) == 0.999 else partial(adamw, betas=(0.9, cfg['beta2']))  # beta1: the schedule's

def mixing(cfg):
    "The recipe's MixUpS (`mixup` alpha) and CutMixS (`cutmix` alpha), if any, each applied to a share `mix_p` of the images."
    p = cfg.get('mix_p', 1.)
    return ([MixUpS(cfg['mixup'], p)] if cfg.get('mixup') else []) + ([CutMixS(cfg['cutmix'], p)] if cfg.get('cutmix') else [])

def schedule(cfg, total_steps):
    "The one-cycle schedule of a recipe, for `SchedulerS`: peak lr `cfg['lr']` after `cfg['pct_start']` of the steps."
    return partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=cfg['lr'], total_steps=total_steps,
                   pct_start=cfg.get('pct_start', 0.3), anneal_strategy=cfg.get('anneal', 'cos'))

@torch.no_grad()
def tta_accuracy(model, dl, prep, fast_path, flip=True):
    """Test accuracy of the average of the predictions for each image and its mirror image (of the image alone if not
    `flip`); `prep` readies a batch of raw images for the model (device, size, normalization)."""
    model.eval()
    correct = n = 0
    for x, y in dl:
        x = prep(x)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=fast_path):
            p = model(x).float().softmax(1)
            if flip: p += model(x.flip(-1)).float().softmax(1)
        correct += (p.argmax(1) == y).sum().item(); n += len(y)
    return correct / n

def run(dls, cfg, seed, device, progress=True):
    set_seed(seed)
    model = resnet().apply(init_weights)
    if cfg.get('zero_bn'): zero_residual_bn(model)
    n_epochs = cfg['epochs']
    sched = schedule(cfg, n_epochs * len(dls.train))
    metrics, timer = MetricsS(accuracy=tem.MulticlassAccuracy()), EpochTimerS()
    augmentation = recipe_augmentation(cfg['crop'], cfg['erasing'])
    if cfg.get('flip') == 'alt': augmentation = nn.Sequential(*list(augmentation)[1:])  # AlternatingFlipS mirrors instead
    augment = AugmentS(augmentation)
    subs = [DeviceS(device), NormalizationS(FMNIST_MEAN, FMNIST_STD), metrics, SchedulerS(sched), augment, timer]
    if cfg.get('size'): subs.append(UpsampleS(cfg['size']))
    if cfg.get('flip') == 'alt': subs.append(AlternatingFlipS())
    if cfg.get('aug_off'): subs.append(AugmentOffS(augment, cfg['aug_off']))
    if progress: subs.append(ProgressS(bars=False))
    else: metrics._log = lambda row: None
    subs += mixing(cfg)
    if cfg.get('resize'): subs.append(ResizeS(cfg['resize']))
    if cfg['fast_path']: subs += fast_path()  # bf16 autocast, channels-last, CPUAllocatorS
    if cfg.get('compile'): subs.append(CompileS(eval=False, dynamic=False))  # static shapes; evaluation eager
    if not cfg['eval_every_epoch']: subs.append(LastEpochEvalS())
    if cfg.get('sam'): subs.append(SAMS(cfg['sam']))
    ema = EMAS(cfg['ema']) if cfg.get('ema') else None
    if ema: subs.append(ema)
    loss_fn = recipe_loss(cfg['label_smoothing'])
    learn = Learner(model, dls, loss_fn, optimizer(cfg), cfg['lr'], subs)
    t = time.perf_counter()
    learn.fit(n_epochs)
    wall = time.perf_counter() - t
    evals = [r for r in metrics.rows if r['mode'] == 'eval']
    def prep(x):  # what the subscribers do to a batch before the model sees it, augmentation aside
        x = (upsample(x.to(device), cfg.get('size', 0)) - FMNIST_MEAN) / FMNIST_STD
        return x.contiguous(memory_format=torch.channels_last) if cfg['fast_path'] else x
    rows = _rows_with_time(metrics.rows, timer.times)
    extra = {}
    if ema: extra = dict(ema_acc=tta_accuracy(ema.model.module, dls.valid, prep, cfg['fast_path'], flip=False),
                         ema_tta_acc=tta_accuracy(ema.model.module, dls.valid, prep, cfg['fast_path']))
    if cfg.get('recal_bn'):
        recal = recalibrated_bn(model, dls.train, prep, cfg['fast_path'])
        extra.update(recal_acc=tta_accuracy(recal, dls.valid, prep, cfg['fast_path'], flip=False),
                     recal_tta_acc=tta_accuracy(recal, dls.valid, prep, cfg['fast_path']))
    hit = next((r for r in rows if r['mode'] == 'eval' and r['accuracy'] >= TARGET), None)  # the series' accuracy
    return dict(seed=seed, test_acc=evals[-1]['accuracy'], test_loss=evals[-1]['loss'], wall_s=wall,
                tta_acc=tta_accuracy(model, dls.valid, prep, cfg['fast_path']), rows=rows,
                target=TARGET, target_epochs=hit and hit['epoch'] + 1, target_s=hit and hit['elapsed_s'], **extra)

def _rows_with_time(rows, times):
    at = {(e, m): s for e, m, s in times}
    return [{**r, 'elapsed_s': at.get((r['epoch'], r['mode']))} for r in rows]

def summary(runs):
    "Mean (and standard deviation) over the seeds."
    accs = [r['test_acc'] for r in runs]
    return dict(n_seeds=len(accs), mean_test_acc=statistics.mean(accs), std_test_acc=statistics.stdev(accs) if len(accs) > 1 else None,
                mean_tta_acc=statistics.mean(r['tta_acc'] for r in runs), mean_wall_s=statistics.mean(r['wall_s'] for r in runs))

def merge(paths, out_path, note=None):
    "Combine the JSON results of separate runs of one recipe into one file, and print the summary."
    parts = [json.loads(open(p).read()) for p in paths]
    if len({json.dumps([p['config'], p['batch_size']], sort_keys=True) for p in parts}) != 1:
        sys.exit('the files hold different recipes (or batch sizes): merge only runs of one recipe')
    out = {**parts[0], 'runs': sorted((r for p in parts for r in p['runs']), key=lambda r: r['seed'])}
    if note: out['note'] = note
    out['summary'] = s = summary(out['runs'])
    if out_path:
        with open(out_path, 'w') as f: json.dump(out, f, indent=1)
    per_seed = ', '.join(f"seed {r['seed']}: {r['test_acc']:.4f}" for r in out['runs'])
    print(f"{out['recipe']}: mean test accuracy {s['mean_test_acc']:.4f} over {s['n_seeds']} seed(s) ({per_seed}), "
          f"mean wall time {s['mean_wall_s']:.0f}s")

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', help='folder with the four Fashion-MNIST idx files (default: the bundled sample)')
    ap.add_argument('--recipe', choices=sorted(RECIPES), default='best')
    ap.add_argument('--epochs', type=int, help="override the recipe's number of epochs")
    ap.add_argument('--seeds', type=int, nargs='+', default=[1, 2, 3])
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--bs', type=int, help="training batch size (default: the recipe's)")
    ap.add_argument('--compile', action='store_true', help='add torch.compile (CompileS)')
    ap.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE', help='override recipe settings, e.g. crop=1 lr=0.02')
    ap.add_argument('--json', help='write the results to this file (rewritten after every seed)')
    ap.add_argument('--note', help='a note stored with the results (e.g. how the runs shared the machine)')
    ap.add_argument('--merge', nargs='+', metavar='JSON', help='merge the results of runs made separately (same recipe) '
                    'into --json, instead of training')
    args = ap.parse_args()
    if args.merge: return merge(args.merge, args.json, args.note)
    torch.set_num_threads(args.threads)
    cfg = dict(RECIPES[args.recipe])
    if args.epochs: cfg['epochs'] = args.epochs
    if args.compile: cfg['compile'] = True
    if args.bs: cfg['bs'] = args.bs
    for kv in args.set:
        k, v = kv.split('=', 1)
        if k not in cfg and k not in LATER_SETTINGS: sys.exit(f"unknown recipe setting {k!r}; known: {sorted({*cfg, *LATER_SETTINGS})}")
        default = cfg.get(k, LATER_SETTINGS.get(k))
        cfg[k] = type(default)(v) if not isinstance(default, bool) else v.lower() in ('1', 'true', 'yes')
    if cfg.get('flip', 'random') not in ('random', 'alt'): sys.exit(f"flip is 'random' or 'alt', got {cfg['flip']!r}")
    if cfg.get('anneal', 'cos') not in ('cos', 'linear'): sys.exit(f"anneal is 'cos' or 'linear', got {cfg['anneal']!r}")
    device = default_device()
    t = time.perf_counter()
    dd = load_fashion_mnist(args.data) if args.data else load_fashion_mnist_sample()
    dls = DataLoaders.from_hf_dd(dd, batch_size=cfg['bs'], in_memory=True, flatten=False, device=device, drop_last=True)
    dls.valid.batch_size = EVAL_BS  # the test set is evaluated whole (drop_last is for training)
    load_s = time.perf_counter() - t
    print(f"recipe {args.recipe}: {cfg}; data {args.data or 'sample'} ({dls.train.n} train, {dls.valid.n} test) loaded in "
          f"{load_s:.1f}s; {device}, {args.threads} threads, torch {torch.__version__}", flush=True)
    out = dict(recipe=args.recipe, note=args.note, config=cfg, data=args.data or 'sample', batch_size=cfg['bs'], device=str(device),
               threads=args.threads, torch=torch.__version__, machine=platform.machine(), runs=[])
    for seed in args.seeds:
        load0 = os.getloadavg()
        r = run(dls, cfg, seed, device)
        r['loadavg_start'], r['loadavg_end'] = load0, os.getloadavg()
        out['runs'].append(r)
        hit = (f"first >= {TARGET:.1%} after epoch {r['target_epochs']} at {r['target_s']:.0f}s" if r['target_epochs']
               else f"never >= {TARGET:.1%} in the evaluated epochs")
        print(f"seed {seed}: test accuracy {r['test_acc']:.4f} (flip TTA {r['tta_acc']:.4f}) after {cfg['epochs']} epochs "
              f"in {r['wall_s']:.0f}s ({hit})" + (f"; EMA weights {r['ema_acc']:.4f} (flip TTA {r['ema_tta_acc']:.4f})" if 'ema_acc' in r else '')
              + (f"; BatchNorm recalibrated {r['recal_acc']:.4f} (flip TTA {r['recal_tta_acc']:.4f})" if 'recal_acc' in r else '')
              + f"; load average {r['loadavg_start'][0]:.2f} -> {r['loadavg_end'][0]:.2f}", flush=True)
        out['summary'] = summary(out['runs'])
        if args.json:
            with open(args.json, 'w') as f: json.dump(out, f, indent=1)
    s = out['summary']
    print(f"{args.recipe}: mean test accuracy {s['mean_test_acc']:.4f}" + (f" ± {s['std_test_acc']:.4f}" if s['std_test_acc'] else '')
          + f" over {s['n_seeds']} seed(s), {cfg['epochs']} epochs, mean wall time {s['mean_wall_s']:.0f}s")

if __name__ == '__main__': main()
