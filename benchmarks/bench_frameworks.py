"""Is nntrain faster than Lightning and fastai on the same model?

Trains the same model on the same in-memory batches with the same optimizer (torch's AdamW, constant lr) in a
hand-written PyTorch loop, nntrain's Learner, a Lightning Trainer and a fastai Learner, and prints each one's time per
training step and its ratio to the plain loop's, measured in the same round. Two models:

- `resnet`: the series' ResNet (`nntrain.resnet.resnet()`, 1,227,900 parameters) at batch size 128, the recipe's
  batch size. Its steps take tens of milliseconds, so this compares what each library makes of a real model, and
  above all its fast path on a CPU:
  - plain: `torch.autocast('cpu', torch.bfloat16)` and channels-last written by hand;
  - nntrain: `fast_path()` (bf16 autocast, channels-last, CPUAllocatorS);
  - Lightning: `precision='bf16-mixed'`, the model and inputs made channels-last by hand (it has no switch for that);
  - fastai: `learn.to_bf16()` and channels-last by hand. fastai's MixedPrecision callback enters
    `autocast('cuda', ...)` whatever the device, so on a CPU `to_bf16()` changes nothing and fastai trains in fp32:
    the row measures what a fastai user gets. A second fastai row adds a three-line callback that enters
    `torch.autocast('cpu', torch.bfloat16)` around the forward pass and the loss, which is what fastai would need.
- `mlp`: a 784-64-10 MLP at batch size 128, fp32. Its steps take under a millisecond, so what shows is each library's
  own per-step cost (dispatch, hooks, bookkeeping).

Every library runs with what would slow it down and is not training switched off: no progress bars, no loggers or
checkpoints, no metrics, no validation (fastai always validates, on one batch here, outside the timed window).

How it times. Each measurement runs in a fresh Python process, because the fast path's CPUAllocatorS changes glibc's
malloc settings for the rest of a process (see chapter 5), and that would speed up whatever runs after it. In that
process the library first trains a few warm-up steps, then trains `--steps` steps on an iterable of batches that
records the time at which each batch is taken: the time per step is the time between the second batch taken and the
end of the iteration, divided by the steps in between. (Lightning stops after `len()` batches without asking for one
more, so its last stamp is the last batch taken, one step earlier: the average is over one step fewer, no less exact.) The library's set-up before its first step and its work
after the last (fastai's validation) are left out: they are the same few milliseconds whatever the length of the run.
The variants of a model run in a new order every round (the plain loop among them), and each variant's ratio is
its time over the plain fp32 loop's in the same round; the table gives the median over the rounds.

Libraries that are not installed are skipped with a line saying so (nntrain's tests run this script without them).
Lightning and fastai don't go in nntrain's own environment: fastai needs a newer fastcore than nbdev 2's, so they
live in a venv of their own, e.g.:

    python3 -m venv /tmp/fw && . /tmp/fw/bin/activate && pip install torch==2.13.0 && pip install -e . lightning
    pip install --no-deps fastai && pip install fastcore fastdownload fasttransform fastprogress pandas scikit-learn \
        scipy "plum-dispatch<2.10" cloudpickle requests pyyaml   # all of fastai's needs but torchvision and spacy
    python benchmarks/bench_frameworks.py [--rounds 5] [--steps 40] [--threads 2] [--json FILE]
    python benchmarks/bench_frameworks.py --merge run1.json run2.json --json benchmarks/results/frameworks.json

`--check` instead trains each installed library for a few fp32 steps from the same weights and prints how far its
weights end up from the plain loop's: all of them do the same work, or the times would not compare.
"""
import argparse, json, os, platform, random, statistics, subprocess, sys, time
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

LR = 1e-3
MODELS = dict(resnet=dict(bs=128, steps=40), mlp=dict(bs=128, steps=400))
FRAMEWORKS = ('plain', 'nntrain', 'lightning', 'fastai')
# (model, framework, fast): the variants timed; 'fastai+autocast' is fastai with a CPU autocast callback
VARIANTS = [('resnet', f, fast) for fast in (False, True) for f in FRAMEWORKS] + [('resnet', 'fastai+autocast', True)] \
         + [('mlp', f, False) for f in FRAMEWORKS]
WARMUP_STEPS = 5

def installed(framework):
    "Whether `framework`'s library can be imported here (plain and nntrain always can)."
    module = dict(lightning='lightning', fastai='fastai.basics').get(framework.split('+')[0])
    if module is None: return True
    try: __import__(module)
    except ImportError: return False
    return True

def make_model(name, seed=0):
    "The model `name` with weights drawn from `seed`: every library starts from the same ones."
    torch.manual_seed(seed)
    if name == 'mlp': return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    from nntrain.activations import init_weights
    from nntrain.resnet import resnet
    model = resnet()
    model.apply(init_weights)
    return model

def sample_batches(bs, n):
    "`n` batches of `bs` Fashion-MNIST sample images (1x28x28 floats) and labels, cycling over the bundled sample."
    from nntrain.dataloaders import DataLoaders, load_fashion_mnist_sample
    dls = DataLoaders.from_hf_dd(load_fashion_mnist_sample(), batch_size=bs, in_memory=True, flatten=False, drop_last=True)
    batches = [[x.reshape(-1, 1, 28, 28).clone(), y.clone()] for x, y in dls.train]
    return [batches[i % len(batches)] for i in range(n)]

class StampedBatches:
    "An iterable of `batches` that records the time each one is taken, and the time the iteration ends (not a list: Lightning takes a list for several loaders)."
    def __init__(self, batches): self.batches, self.stamps = batches, []
    def __len__(self): return len(self.batches)
    def __iter__(self):
        self.stamps = []
        for b in self.batches:
            self.stamps.append(time.perf_counter())
            yield b
        self.stamps.append(time.perf_counter())

    def step_time(self):
        "Seconds per step from the second batch taken to the end: the first step, and what came before it, left out."
        s = self.stamps
        return (s[-1] - s[1]) / (len(s) - 2)

def to_channels_last(x): return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x

def plain_fit(model, batches, fast):
    "The loop a PyTorch user writes by hand; `fast`: bf16 autocast and channels-last, by hand."
    opt = torch.optim.AdamW(model.parameters(), LR)
    if fast: model.to(memory_format=torch.channels_last)
    model.train()
    for xb, yb in batches:
        if fast: xb = to_channels_last(xb)
        with torch.autocast('cpu', torch.bfloat16, enabled=fast):
            loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad()

def nntrain_fit(model, batches, fast):
    "nntrain's Learner, with `fast_path()` when `fast`."
    from nntrain.dataloaders import DataLoaders
    from nntrain.learner import Learner
    from nntrain.resnet import fast_path
    learn = Learner(model, DataLoaders(batches, []), F.cross_entropy, torch.optim.AdamW, LR, fast_path() if fast else [])
    learn.fit(1, valid=False)

def lightning_fit(model, batches, fast):
    "A Lightning Trainer with its extras off; `fast`: `precision='bf16-mixed'` and channels-last by hand."
    import lightning as L
    quiet()  # Lightning sets its loggers' levels when first imported
    class Module(L.LightningModule):
        def __init__(self, model):
            super().__init__()
            self.model = model
        def training_step(self, batch, batch_idx):
            xb, yb = batch
            return F.cross_entropy(self.model(to_channels_last(xb) if fast else xb), yb)
        def configure_optimizers(self): return torch.optim.AdamW(self.parameters(), LR)
    if fast: model.to(memory_format=torch.channels_last)
    trainer = L.Trainer(max_epochs=1, accelerator='cpu', devices=1, precision='bf16-mixed' if fast else '32-true',
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(Module(model), train_dataloaders=batches)

def fastai_fit(model, batches, fast, cpu_autocast=False):
    "A fastai Learner with its progress bar and logging off; `fast`: `to_bf16()` and channels-last by hand; `cpu_autocast`: also a CPU autocast callback."
    from fastai.basics import Callback, DataLoaders, Learner, OptimWrapper
    import fastai.callback.fp16, fastai.callback.progress  # noqa: F401  (to_bf16 and no_bar; the bar is on by default once imported)
    class ChannelsLast(Callback):
        def before_batch(self): self.learn.xb = tuple(to_channels_last(x) for x in self.xb)
    class CPUAutocast(Callback):
        order = 10
        def before_batch(self): self.autocast = torch.autocast('cpu', torch.bfloat16); self.autocast.__enter__()
        def after_loss(self): self.autocast.__exit__(None, None, None)
    cbs = ([ChannelsLast()] if fast else []) + ([CPUAutocast()] if cpu_autocast else [])
    learn = Learner(DataLoaders(batches, batches.batches[:1], device=None), model, loss_func=F.cross_entropy,
                    opt_func=partial(OptimWrapper, opt=torch.optim.AdamW), lr=LR, cbs=cbs)
    if fast:
        model.to(memory_format=torch.channels_last)
        learn.to_bf16()
    with learn.no_bar(), learn.no_logging(): learn.fit(1, LR)

FITS = dict(plain=plain_fit, nntrain=nntrain_fit, lightning=lightning_fit, fastai=fastai_fit,
            **{'fastai+autocast': partial(fastai_fit, cpu_autocast=True)})

def quiet():
    "Silence the libraries' chatter (Lightning's tips and warnings) so the measurement's one line of JSON is readable."
    import logging, warnings
    warnings.filterwarnings('ignore')
    for name in ('lightning', 'lightning.pytorch', 'lightning.fabric', 'pytorch_lightning'):
        logging.getLogger(name).setLevel(logging.ERROR)

def measure(model_name, framework, fast, steps, threads):
    "Seconds per training step of one variant, after a warm-up fit (run in a process of its own, see the docstring)."
    quiet()
    torch.set_num_threads(threads)
    bs = MODELS[model_name]['bs']
    model = make_model(model_name)
    fit = FITS[framework]
    fit(model, StampedBatches(sample_batches(bs, WARMUP_STEPS)), fast)  # builds the kernels and caches every later step reuses
    stamped = StampedBatches(sample_batches(bs, steps))
    fit(model, stamped, fast)
    assert torch.get_num_threads() == threads, f'{framework} changed the number of threads'
    return stamped.step_time()

def run_one(variant, steps, threads):
    "Measure `variant` in a fresh Python process; returns its seconds per step."
    model_name, framework, fast = variant
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); import bench_frameworks as b; "
            f"print('RESULT', b.measure({model_name!r}, {framework!r}, {fast!r}, {steps}, {threads}))")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    lines = [l for l in out.stdout.splitlines() if l.startswith('RESULT ')]
    if out.returncode or not lines: raise RuntimeError(f'{variant} failed:\n{out.stderr[-3000:]}')
    return float(lines[-1].split()[1])

def label(variant):
    model_name, framework, fast = variant
    return f"{model_name} {framework} {'fast path' if fast else 'fp32'}"

def benchmark(variants, rounds, steps, threads, log=print):
    "Time every variant once per round, in a new random order each round; ratios are to the plain fp32 loop of the same model and round."
    times = {v: [] for v in variants}
    for r in range(rounds):
        order = random.Random(r).sample(variants, len(variants))
        for v in order: times[v].append(run_one(v, steps or MODELS[v[0]]['steps'], threads))
        log(f'round {r + 1}/{rounds} done')
    return summarize(times, variants)

def summarize(times, variants):
    "The table's rows from each variant's seconds per step, one per round (`times[variant]`)."
    rows = []
    for v in variants:
        base = times[(v[0], 'plain', False)]
        ratios = [t / b for t, b in zip(times[v], base)]
        rows.append(dict(variant=label(v), model=v[0], framework=v[1], fast=v[2], median_ms_per_step=1e3 * statistics.median(times[v]),
                         ratio_to_plain_fp32=statistics.median(ratios), ratios=ratios, ms_per_step=[1e3 * t for t in times[v]]))
    return rows

def merge(results):
    "One result from the JSON results of several runs (the same variants): every round of every run counts once."
    variants = [(r['model'], r['framework'], r['fast']) for r in results[0]['rows']]
    times = {v: [] for v in variants}
    for res in results:
        if [(r['model'], r['framework'], r['fast']) for r in res['rows']] != variants: raise ValueError('the runs timed different variants')
        for v, r in zip(variants, res['rows']): times[v] += [t / 1e3 for t in r['ms_per_step']]
    return dict(results[0], rounds=sum(r['rounds'] for r in results), n_runs=sum(r.get('n_runs', 1) for r in results),
                rows=summarize(times, variants))

def check(model_name='resnet', steps=3, threads=2, log=print):
    "Train each installed library `steps` fp32 steps from the same weights on the same batches; the largest weight difference from the plain loop's."
    quiet()
    torch.set_num_threads(threads)
    batches = sample_batches(MODELS[model_name]['bs'], steps)
    start = torch.cat([p.detach().flatten() for p in make_model(model_name).state_dict().values() if p.is_floating_point()])
    weights = {}
    for framework in FRAMEWORKS:
        if not installed(framework): continue
        torch.manual_seed(1)  # the same random state before every library's run
        model = make_model(model_name)
        FITS[framework](model, StampedBatches(batches), False)
        weights[framework] = torch.cat([p.detach().flatten() for p in model.state_dict().values() if p.is_floating_point()])
    diffs = {f: (w - weights['plain']).abs().max().item() for f, w in weights.items()}
    moved = {f: (w - start).abs().max().item() for f, w in weights.items()}
    for f, d in diffs.items():
        log(f'{model_name} {f:10s} weights moved by up to {moved[f]:.2e}; largest difference from the plain loop\'s: {d:.2e}')
    return diffs, moved

def cpu_name():
    "The CPU's model name as Linux gives it (else the platform's processor string)."
    try:
        with open('/proc/cpuinfo') as f: return next(l.split(':', 1)[1].strip() for l in f if l.startswith('model name'))
    except (OSError, StopIteration): return platform.processor()

def print_table(rows):
    print(f"\n{'variant':34s} {'ms/step':>9s} {'vs plain fp32':>14s}")
    for r in rows: print(f"{r['variant']:34s} {r['median_ms_per_step']:9.2f} {r['ratio_to_plain_fp32']:13.3f}x")

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--steps', type=int, help='timed steps per measurement (default: 40 for resnet, 400 for mlp)')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--models', nargs='+', choices=sorted(MODELS), default=sorted(MODELS))
    ap.add_argument('--check', action='store_true', help='check that the libraries train alike instead of timing them')
    ap.add_argument('--merge', nargs='+', metavar='JSON', help='combine the --json files of separate runs')
    ap.add_argument('--json', help='write the results to this file')
    args = ap.parse_args()
    if args.merge:
        res = merge([json.load(open(f)) for f in args.merge])
        print_table(res['rows'])
        if args.json:
            with open(args.json, 'w') as f: json.dump(res, f, indent=1)
        return
    if args.check:
        for m in args.models: check(m, threads=args.threads)
        return
    missing = [f for f in FRAMEWORKS + ('fastai+autocast',) if not installed(f)]
    for f in missing: print(f'{f}: not installed, skipped')
    variants = [v for v in VARIANTS if v[0] in args.models and v[1] not in missing]
    rows = benchmark(variants, args.rounds, args.steps, args.threads)
    print_table(rows)
    if args.json:
        import importlib.metadata as md
        versions = {}
        for p in ('torch', 'nntrain', 'lightning', 'fastai'):
            try: versions[p] = md.version(p)
            except md.PackageNotFoundError: pass
        from nntrain.resnet import cpu_has_fast_bf16
        info = dict(rounds=args.rounds, n_runs=1, threads=args.threads, steps=args.steps, versions=versions, machine=platform.machine(),
                    cpu=cpu_name(), cpu_capability=torch.backends.cpu.get_cpu_capability(), cpu_has_fast_bf16=cpu_has_fast_bf16(),
                    lr=LR, optimizer='torch.optim.AdamW', rows=rows)
        with open(args.json, 'w') as f: json.dump(info, f, indent=1)

if __name__ == '__main__': main()
