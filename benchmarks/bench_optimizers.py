"""How fast is one `step()` of nntrain's optimizers next to their torch counterparts?

Times only the update step (gradients are fixed random tensors, no forward/backward) on a stack of Linear
layers of about 10 M parameters. For each optimizer it times nntrain's exported version (foreach, one
`torch._foreach_*` call per operation per param group), nntrain's readable per-parameter version
(`foreach=False`), and torch's counterpart both with its CPU default (a per-parameter loop; torch only
defaults to foreach on accelerators) and with `foreach=True`. Runs are interleaved and repeated; the table
shows medians of the time per step, and the ratio ours/torch for each implementation (below 1: ours is faster).

    python benchmarks/bench_optimizers.py [--layers 10] [--width 1000] [--steps 10] [--reps 7] [--device cpu] [--threads N]
"""
import argparse, statistics, time, warnings
from functools import partial

import torch
from torch import nn

from nntrain.acceleration import SGD, Momentum, RMSProp, Adam, AdaBound

def make_params(layers, width, device, seed=0):
    "The parameters of `layers` Linear(width, width) layers, each with a fixed random gradient."
    torch.manual_seed(seed)
    model = nn.Sequential(*[nn.Linear(width, width) for _ in range(layers)]).to(device)
    params = list(model.parameters())
    for p in params: p.grad = torch.randn_like(p) * 1e-2
    return params

def cases():
    "(name, nntrain optimizer factory, torch optimizer factory taking foreach=...) with matching hyperparameters."
    import adabound  # the AdaBound authors' package: its only implementation is a per-parameter loop
    T = torch.optim
    return [
        ('SGD(wd)',   partial(SGD, lr=1e-3, wd=1e-2),             partial(T.SGD, lr=1e-3, weight_decay=1e-2)),
        ('Momentum',  partial(Momentum, lr=1e-3, mom=0.9),        partial(T.SGD, lr=1e-3, momentum=0.9, dampening=0.9)),
        ('RMSProp',   partial(RMSProp, lr=1e-3, sqr_mom=0.99),    partial(T.RMSprop, lr=1e-3, alpha=0.99, eps=1e-5)),
        ('Adam',      partial(Adam, lr=1e-3),                     partial(T.Adam, lr=1e-3, betas=(0.9, 0.99), eps=1e-5)),
        ('Adam(wd)',  partial(Adam, lr=1e-3, wd=1e-2),            partial(T.AdamW, lr=1e-3, betas=(0.9, 0.99), eps=1e-5,
                                                                          weight_decay=1e-2)),
        ('AdaBound',  partial(AdaBound, lr=1e-3),                 lambda params, foreach: adabound.AdaBound(params, lr=1e-3)),
    ]

def time_step(opt, steps, sync):
    "Seconds per `opt.step()`, averaged over `steps` steps."
    sync()
    t = time.perf_counter()
    for _ in range(steps): opt.step()
    sync()
    return (time.perf_counter() - t) / steps

def bench(variants, params, steps, reps, sync):
    "Median seconds per step of each variant; the variants are interleaved, their order rotating each rep."
    opts = {name: make(params) for name, make in variants.items()}
    for opt in opts.values(): time_step(opt, 2, sync)  # warm-up: creates the state, first-call overheads
    times = {name: [] for name in variants}
    names = list(variants)
    for r in range(reps):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(time_step(opts[name], steps, sync))
    return {name: statistics.median(ts) for name, ts in times.items()}

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--layers', type=int, default=10)
    ap.add_argument('--width', type=int, default=1000)
    ap.add_argument('--steps', type=int, default=10, help='steps per timed run')
    ap.add_argument('--reps', type=int, default=7, help='timed runs per variant (the median is reported)')
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch\'s choice)')
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    warnings.filterwarnings('ignore', category=UserWarning)  # adabound 0.0.5 uses deprecated torch overloads
    device = torch.device(a.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == 'cuda' else (lambda: None)
    # The updates change the weights but the timing does not depend on their values: all variants share one set
    # of parameters (each has its own optimizer state), which keeps memory at one model's worth.
    params = make_params(a.layers, a.width, device)
    n = sum(p.numel() for p in params)
    print(f'{a.layers} x Linear({a.width}, {a.width}): {n / 1e6:.1f} M parameters in {len(params)} tensors, '
          f'{device}, torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'median of {a.reps} runs of {a.steps} steps')
    cols = [('torch loop', 'ours loop'), ('torch foreach', 'ours foreach')]
    print(f"{'':<11}" + ''.join(f"{'--- ' + kind + ' (ms/step) ---':^36}" for kind in ('per-parameter loop', 'foreach')))
    print(f"{'optimizer':<11}" + f"{'torch':>12}{'ours':>12}{'ours/torch':>12}" * 2)
    for name, ours, theirs in cases():
        variants = {'torch loop': partial(theirs, foreach=False), 'torch foreach': partial(theirs, foreach=True),
                    'ours loop': partial(ours, foreach=False), 'ours foreach': partial(ours, foreach=True)}
        if name == 'AdaBound': del variants['torch foreach']  # the package has no foreach version
        t = bench(variants, params, a.steps, a.reps, sync)
        row = f'{name:<11}'
        for ref, mine in cols:
            if ref in t: row += f'{t[ref] * 1e3:>12.2f}{t[mine] * 1e3:>12.2f}{t[mine] / t[ref]:>11.2f}x'
            else: row += f"{'-':>12}{t[mine] * 1e3:>12.2f}{'-':>12}"
        print(row, flush=True)
    print("torch's optimizers default to the loop on the CPU and to foreach on GPUs; nntrain's do the same (foreach=None).")
    print('AdaBound: "torch" is the adabound package (0.0.5), which only has a per-parameter loop.')

if __name__ == '__main__':
    main()
