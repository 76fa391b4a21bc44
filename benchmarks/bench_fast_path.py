"""How much faster does the series' ResNet train with the fast path (mixed precision, channels-last, torch.compile)?

Times training steps of `resnet()` at batch size 1024 on real Fashion-MNIST images, for a plain fp32 PyTorch loop
(the baseline) and for nntrain's Learner with and without the fast-path subscribers. The variants run interleaved,
round after round, so all see the same machine state; it prints the median time per step, the speed-up over the
plain fp32 loop, and the speed-up over the Learner in fp32 with `CPUAllocatorS` (so that what mixed precision and
channels-last gain on their own shows apart from what the allocator gains), and can write them as JSON.
`CPUAllocatorS` restores glibc's settings after each fit, so the plain loop runs with the allocator a user gets.

    python benchmarks/bench_fast_path.py [--bs 1024] [--steps 5] [--rounds 5] [--threads 2] [--compile] [--json PATH]

One run's figures move by several percent from process to process (where the allocator puts things, the machine's
state), so report several: `--merge a.json b.json c.json --json out.json` combines runs into the median, per
variant, of each run's speed-ups (each measured within its run), and keeps every run's speed-ups and warm-up times (the
first run's warm-up includes torch.compile's work with whatever on-disk cache it found; later runs find it warm).

On a CPU, mixed precision means bf16 autocast, which the amp rows insist on: it is fast where the CPU has AVX512-BF16 or
AMX, and many times slower than fp32 where it hasn't (where `fast_path()` trains in fp32: the row 'channels_last +
allocator fp32'); on CUDA, bf16 or fp16.
"""
import argparse, json, os, platform, statistics, time

import torch
import torch.nn.functional as F

from nntrain.activations import init_weights
from nntrain.learner import DeviceS, Learner, Subscriber, default_device
from nntrain.resnet import ChannelsLastS, CompileS, CPUAllocatorS, MixedPrecisionS, cpu_has_fast_bf16, resnet

def real_batch(bs, device):
    "`bs` images and labels of the bundled Fashion-MNIST sample (repeated if needed), as floats on `device`."
    from nntrain.dataloaders import DataLoaders, load_fashion_mnist_sample
    dls = DataLoaders.from_hf_dd(load_fashion_mnist_sample(), batch_size=bs, in_memory=True, flatten=False)
    x, y = next(iter(dls.train))
    return [x.to(device), y.to(device)]

def make_model(device, seed=0):
    torch.manual_seed(seed)
    return resnet().apply(init_weights).to(device)

def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize()

class StepTimer(Subscriber):
    "Records the wall time of every training step (from one after_step to the next)."
    order = 1000
    def __init__(self, device): self.device, self.times = device, []
    def before_epoch(self, learn): sync(self.device); self._t = time.perf_counter()
    def after_step(self, learn):
        sync(self.device); t = time.perf_counter()
        self.times.append(t - self._t); self._t = t

class _DLs:
    def __init__(self, train): self.train, self.valid = train, None

def plain_loop(batch, steps, device):
    "The fp32 loop a PyTorch user writes by hand: the baseline. Returns the time of each step."
    model = make_model(device)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    model.train()
    times = []
    for _ in range(steps):
        sync(device); t = time.perf_counter()
        loss = F.cross_entropy(model(batch[0]), batch[1])
        loss.backward(); opt.step(); opt.zero_grad()
        sync(device); times.append(time.perf_counter() - t)
    return times

def learner_run(batch, steps, device, subs_fn, state):
    "Train with the Learner and `subs_fn()`; the model (and a compiled graph) are kept in `state` across rounds."
    if 'model' not in state: state['model'], state['subs'] = make_model(device), subs_fn()
    timer = StepTimer(device)
    Learner(state['model'], _DLs([batch] * steps), F.cross_entropy, torch.optim.Adam, 1e-3,
            [DeviceS(device), *state['subs'], timer]).fit(1, valid=False)
    return timer.times

def make_variants(device, compile=False, fast_bf16=None):
    """The variants timed, by name: a function that makes the subscribers of each (None for the plain loop). With `compile`,
    the fast path with torch.compile, as `fast_path()` + `CompileS` would train on `device`: with bf16 where the device has it,
    and also in fp32 on a CPU without bf16 instructions (`fast_bf16` defaults to `cpu_has_fast_bf16()`)."""
    cpu = device.type == 'cpu'
    if fast_bf16 is None: fast_bf16 = cpu_has_fast_bf16()
    # on a CPU, the amp rows insist on bf16: MixedPrecisionS() alone would train in fp32 where the CPU lacks bf16 instructions
    amp = lambda: MixedPrecisionS(torch.bfloat16 if cpu else None)
    variants = {
        'plain loop fp32': None,
        'Learner fp32': lambda: [],
        'Learner fp32 + allocator': lambda: [CPUAllocatorS()],
        'Learner bf16' if device.type != 'cuda' else 'Learner amp': lambda: [amp()],
        'Learner channels_last fp32': lambda: [ChannelsLastS()],
        'Learner amp + channels_last': lambda: [amp(), ChannelsLastS()],
        'Learner amp + channels_last + allocator': lambda: [amp(), ChannelsLastS(), CPUAllocatorS()],  # fast_path() with bf16
    }
    if cpu:  # what fast_path() trains with on a CPU without bf16 instructions
        variants['Learner channels_last + allocator fp32'] = lambda: [ChannelsLastS(), CPUAllocatorS()]
    if compile:
        variants['Learner amp + channels_last + allocator + compile'] = lambda: [amp(), ChannelsLastS(), CPUAllocatorS(), CompileS()]
        if cpu and not fast_bf16:
            variants['Learner channels_last + allocator fp32 + compile'] = lambda: [ChannelsLastS(), CPUAllocatorS(), CompileS()]
    return variants

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--bs', type=int, default=1024)
    ap.add_argument('--steps', type=int, default=5, help='timed training steps per variant and round')
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--compile', action='store_true', help='add the fast path with torch.compile (see make_variants)')
    ap.add_argument('--merge', nargs='+', metavar='JSON', help='combine the --json files of separate runs (see above)')
    ap.add_argument('--json', help='write the results to this file')
    args = ap.parse_args()
    if args.merge: return merge(args.merge, args.json)
    torch.set_num_threads(args.threads)
    device = default_device()
    batch = real_batch(args.bs, device)
    variants = make_variants(device, args.compile)
    states = {k: {} for k in variants}
    times = {k: [] for k in variants}
    t_warm = {}
    for name, fn in variants.items():  # warm-up: oneDNN picks its kernels, torch.compile compiles
        t = time.perf_counter()
        plain_loop(batch, 2, device) if fn is None else learner_run(batch, 2, device, fn, states[name])
        t_warm[name] = time.perf_counter() - t
    for r in range(args.rounds):
        for name, fn in variants.items():
            times[name] += plain_loop(batch, args.steps, device) if fn is None else learner_run(batch, args.steps, device, fn, states[name])
    base, base_alloc = statistics.median(times['plain loop fp32']), statistics.median(times['Learner fp32 + allocator'])
    load = os.getloadavg()
    print(f"resnet() training step, batch {args.bs}, {device} ({platform.processor() or platform.machine()}), "
          f"{args.threads} threads, torch {torch.__version__}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'variant':<52}{'median s/step':>14}{'speed-up':>10}{'vs fp32+alloc':>14}{'images/s':>10}{'warm-up s':>11}")
    rows = []
    for name in variants:
        med = statistics.median(times[name])
        rows.append(dict(variant=name, median_s_per_step=med, speedup=base / med, speedup_vs_fp32_allocator=base_alloc / med,
                         images_per_s=args.bs / med, warmup_s=t_warm[name], n_steps=len(times[name])))
        print(f"{name:<52}{med:>14.3f}{base / med:>9.2f}x{base_alloc / med:>13.2f}x{args.bs / med:>10.0f}{t_warm[name]:>11.1f}")
    if args.json:
        out = dict(bs=args.bs, device=str(device), threads=args.threads, torch=torch.__version__, loadavg=load,
                   cpu_capability=torch.backends.cpu.get_cpu_capability(), cpu_has_fast_bf16=cpu_has_fast_bf16(),
                   steps=args.steps, rounds=args.rounds, rows=rows)
        with open(args.json, 'w') as f: json.dump(out, f, indent=1)

def merge(paths, out_path=None):
    "Combine separate runs: per variant, the median over runs of the median step time and of each run's speed-ups."
    runs = [json.load(open(p)) for p in paths]
    names = [r['variant'] for r in runs[0]['rows']]
    if any([r['variant'] for r in run['rows']] != names for run in runs):
        raise SystemExit('--merge: the runs timed different variants; merge runs made with the same options.')
    rows = []
    print(f"median of {len(runs)} runs; speed-ups per run in brackets")
    print(f"{'variant':<52}{'median s/step':>14}{'speed-up':>10}{'vs fp32+alloc':>14}")
    for i, name in enumerate(names):
        per = [run['rows'][i] for run in runs]
        row = dict(variant=name, **{k: statistics.median(r[k] for r in per) for k in ('median_s_per_step', 'speedup', 'speedup_vs_fp32_allocator', 'images_per_s')},
                   speedups=[r['speedup'] for r in per], warmups_s=[r.get('warmup_s') for r in per])
        rows.append(row)
        print(f"{name:<52}{row['median_s_per_step']:>14.3f}{row['speedup']:>9.2f}x{row['speedup_vs_fp32_allocator']:>13.2f}x  "
              f"[{' '.join(f'{x:.2f}' for x in row['speedups'])}]")
    if out_path:
        keep = {k: runs[0][k] for k in ('bs', 'device', 'threads', 'torch', 'steps', 'rounds', 'cpu_capability', 'cpu_has_fast_bf16')
                if k in runs[0]}
        out = dict(keep, n_runs=len(runs), loadavg=[run['loadavg'] for run in runs], rows=rows)
        with open(out_path, 'w') as f: json.dump(out, f, indent=1)

if __name__ == '__main__': main()
