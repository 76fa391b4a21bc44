"""How much faster does the series' ResNet train with the fast path (mixed precision, channels-last, torch.compile)?

Times training steps of `resnet()` at batch size 1024 on real Fashion-MNIST images, for a plain fp32 PyTorch loop
(the baseline) and for nntrain's Learner with and without the fast-path subscribers. The variants run interleaved,
round after round, so all see the same machine state; it prints the median time per step and the speed-up over the
plain fp32 loop, and can write them as JSON.

    python benchmarks/bench_fast_path.py [--bs 1024] [--steps 5] [--rounds 5] [--threads 2] [--compile] [--json PATH]

On a CPU, mixed precision means bf16 autocast (fast where the CPU has AVX512-BF16 or AMX); on CUDA, bf16 or fp16.
"""
import argparse, json, os, platform, statistics, time

import torch
import torch.nn.functional as F

from nntrain.activations import init_weights
from nntrain.learner import DeviceS, Learner, Subscriber, default_device
from nntrain.resnet import ChannelsLastS, CompileS, MixedPrecisionS, resnet

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

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--bs', type=int, default=1024)
    ap.add_argument('--steps', type=int, default=5, help='timed training steps per variant and round')
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--compile', action='store_true', help='add bf16 + channels-last + torch.compile')
    ap.add_argument('--json', help='write the results to this file')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = default_device()
    batch = real_batch(args.bs, device)
    variants = {
        'plain loop fp32': None,
        'Learner fp32': lambda: [],
        'Learner bf16' if device.type != 'cuda' else 'Learner amp': lambda: [MixedPrecisionS()],
        'Learner channels_last fp32': lambda: [ChannelsLastS()],
        'Learner amp + channels_last': lambda: [MixedPrecisionS(), ChannelsLastS()],
    }
    if args.compile: variants['Learner amp + channels_last + compile'] = lambda: [MixedPrecisionS(), ChannelsLastS(), CompileS()]
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
    base = statistics.median(times['plain loop fp32'])
    load = os.getloadavg()
    print(f"resnet() training step, batch {args.bs}, {device} ({platform.processor() or platform.machine()}), "
          f"{args.threads} threads, torch {torch.__version__}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'variant':<42}{'median s/step':>14}{'speed-up':>10}{'images/s':>10}{'warm-up s':>11}")
    rows = []
    for name in variants:
        med = statistics.median(times[name])
        rows.append(dict(variant=name, median_s_per_step=med, speedup=base / med, images_per_s=args.bs / med,
                         warmup_s=t_warm[name], n_steps=len(times[name])))
        print(f"{name:<42}{med:>14.3f}{base / med:>9.2f}x{args.bs / med:>10.0f}{t_warm[name]:>11.1f}")
    if args.json:
        out = dict(bs=args.bs, device=str(device), threads=args.threads, torch=torch.__version__, loadavg=load,
                   steps=args.steps, rounds=args.rounds, rows=rows)
        with open(args.json, 'w') as f: json.dump(out, f, indent=1)

if __name__ == '__main__': main()
