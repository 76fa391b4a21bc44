"""Where the time of one training step of the series' ResNet goes on this CPU, and what it says about the least time to 93.9%.

Times, on the fast path (bf16 autocast, channels-last, CPUAllocatorS's malloc settings), at the recipe's batch size,
each callable once a round, round after round (interleaved, so that all see the same machine state), and reports the
median over `--steps` rounds after a warm-up:

- a whole training step: forward, loss, backward, AdamW step, zero_grad (eager, and with the forward compiled like
  `CompileS` when `--compile`);
- the AdamW step alone;
- each convolution on its own: a copy of the layer, fed a tensor of the shape, dtype and memory format its input has
  in the model, timed forward and forward + backward (with the gradient of its input only where the model needs one:
  not for the first layers, which read the images). The sum is what the convolutions alone cost a step, the part no
  subscriber or fused elementwise kernel can take away.

It prints a table of the convolutions (MACs, milliseconds, GMAC/s), the totals, and the floor they set: the
convolutions' time for the `--epochs` epochs that the quickest measured schedule needs to reach 93.9%, with nothing
else counted. It can write it all as JSON.

    python benchmarks/bench_step_profile.py [--bs 128] [--threads 2] [--steps 30] [--epochs 13] [--runs 5] [--compile] [--json PATH]

One run's figures move by 10% or more from process to process on this machine, so use --runs: every time is then the
median over the runs (each run's own figures are kept under `runs`).

Run it alone on the machine: another busy process makes every figure meaningless.
"""
import argparse, json, math, os, platform, statistics, time

import torch
import torch.nn.functional as F
from torch import nn

from nntrain.activations import init_weights
from nntrain.resnet import CPUAllocatorS, resnet

N_TRAIN = 60_000  # Fashion-MNIST's training images; the recipe drops the last, partial batch

def interleaved_times(fns, steps, warmup=3):
    """Wall times of each of `fns` (a dict of callables), `steps` rounds of one call each, after `warmup` calls of each.
    Interleaving puts every callable under the same machine state, so ratios between them hold even when the machine's
    speed drifts (it does, by 10% or more, on a shared host)."""
    for fn in fns.values():
        for _ in range(warmup): fn()
    times = {k: [] for k in fns}
    for _ in range(steps):
        for k, fn in fns.items():
            t = time.perf_counter(); fn(); times[k].append(time.perf_counter() - t)
    return times

def fast_model(seed=0):
    "The series' resnet with Kaiming init, in channels-last, as the fast path trains it."
    torch.manual_seed(seed)
    return resnet().apply(init_weights).to(memory_format=torch.channels_last)

def batch(bs):
    "A batch of random images (channels-last) and labels: a step's time doesn't depend on the values."
    return torch.randn(bs, 1, 28, 28).contiguous(memory_format=torch.channels_last), torch.randint(0, 10, (bs,))

def step_fn(model, x, y, compile=False):
    "One training step of the fast path (bf16 autocast), AdamW as in the recipe; the forward compiled if `compile`."
    opt = torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=0.01)
    forward = torch.compile(model, dynamic=False) if compile else model
    def step():
        with torch.autocast('cpu', dtype=torch.bfloat16): loss = F.cross_entropy(forward(x), y)
        loss.backward(); opt.step(); opt.zero_grad()
    return step

def optimizer_step_fn(model, x, y):
    "The recipe's AdamW step alone, on the gradients of one bf16 backward (kept between steps)."
    opt = torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=0.01)
    with torch.autocast('cpu', dtype=torch.bfloat16): F.cross_entropy(model(x), y).backward()
    return opt.step

def conv_inputs(model, x):
    "Each Conv2d of `model` (by name) with the shape, dtype and strides of its input in a bf16 forward of `x`."
    seen, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            def hook(mod, args, name=name): seen[name] = (mod, args[0].shape, args[0].dtype, args[0].stride(), args[0].requires_grad)
            hooks.append(m.register_forward_pre_hook(hook))
    with torch.autocast('cpu', dtype=torch.bfloat16): model(x)
    for h in hooks: h.remove()
    return seen

def conv_macs(conv, shape):
    "Multiply-accumulates of one forward of `conv` on an input of `shape` (the whole batch)."
    n, _, h, w = shape
    oh = (h + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
    ow = (w + 2 * conv.padding[1] - conv.kernel_size[1]) // conv.stride[1] + 1
    return n * oh * ow * conv.out_channels * conv.in_channels // conv.groups * math.prod(conv.kernel_size)

def conv_fns(conv, shape, dtype, stride, needs_input_grad):
    "The forward and the forward + backward of a copy of `conv`, on an input like its input in the model."
    conv = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     bias=conv.bias is not None).to(memory_format=torch.channels_last)
    x = torch.empty_strided(shape, stride, dtype=dtype).normal_().requires_grad_(needs_input_grad)
    with torch.autocast('cpu', dtype=torch.bfloat16): out = conv(x)
    grad = torch.randn_like(out)
    def forward():
        with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16): conv(x)
    def forward_backward():
        with torch.autocast('cpu', dtype=torch.bfloat16): out = conv(x)
        out.backward(grad)
        conv.weight.grad = None; x.grad = None
    return forward, forward_backward

def profile_step(bs=128, threads=2, steps=30, epochs=13, compile=False):
    "Times a step, its AdamW step and each convolution (interleaved, medians over `steps` rounds); the floor for `epochs`."
    torch.set_num_threads(threads)
    allocator = CPUAllocatorS(); allocator.before_fit(None)
    try:
        x, y = batch(bs)
        model = fast_model()
        res = dict(bs=bs, threads=threads, steps=steps, epochs=epochs, torch=torch.__version__, machine=platform.processor() or platform.machine(),
                   cpus=os.cpu_count(), allocator_tuned=allocator.active)
        fns = dict(step=step_fn(model, x, y), optimizer_step=optimizer_step_fn(fast_model(), x, y))
        if compile:
            fns['compiled_step'] = step_fn(fast_model(), x, y, compile=True)
            for _ in range(2): fns['compiled_step']()  # compiling, before the warm-up calls
        convs = conv_inputs(model, x)
        for name, (conv, *like) in convs.items(): fns[f'{name} forward'], fns[f'{name} step'] = conv_fns(conv, *like)
        times = interleaved_times(fns, steps)
    finally: allocator.after_fit(None)
    med = {k: statistics.median(v) for k, v in times.items()}
    res.update({f'{k}_s': med[k] for k in ('step', 'optimizer_step', 'compiled_step') if k in med})
    res['convs'] = [dict(name=name, in_shape=list(shape), out_channels=conv.out_channels, kernel=list(conv.kernel_size),
                         stride=conv.stride[0], input_grad=needs_grad, macs=conv_macs(conv, shape),
                         forward_s=med[f'{name} forward'], step_s=med[f'{name} step'])
                    for name, (conv, shape, _, _, needs_grad) in convs.items()]
    res['conv_step_s'] = sum(c['step_s'] for c in res['convs'])
    whole = times['compiled_step' if compile else 'step']
    per_round = [sum(times[f'{n} step'][i] for n in convs) / whole[i] for i in range(steps)]
    res['conv_share'] = statistics.median(per_round)  # of the (compiled) step, round by round
    res['steps_per_epoch'] = N_TRAIN // bs
    res['conv_floor_s'] = res['conv_step_s'] * res['steps_per_epoch'] * epochs
    return res

def median_of_runs(runs):
    "One result whose every time is the median over `runs` (results of `profile_step` with the same settings), keeping the runs."
    med = lambda key, items: statistics.median(r[key] for r in items)
    res = {**runs[0], 'runs': [{k: v for k, v in r.items() if k.endswith('_s') or k == 'conv_share'} for r in runs]}
    for key in ('step_s', 'compiled_step_s', 'optimizer_step_s', 'conv_share'):
        if key in res: res[key] = med(key, runs)
    res['convs'] = [{**cs[0], 'forward_s': med('forward_s', cs), 'step_s': med('step_s', cs)}
                    for cs in zip(*(r['convs'] for r in runs))]  # each conv across the runs
    res['conv_step_s'] = sum(c['step_s'] for c in res['convs'])
    res['conv_floor_s'] = res['conv_step_s'] * res['steps_per_epoch'] * res['epochs']
    return res

def report(res):
    runs = f", then the median over {len(res['runs'])} runs" if 'runs' in res else ''
    print(f"batch size {res['bs']}, {res['threads']} threads, torch {res['torch']}: median of {res['steps']} steps{runs}")
    print(f"{'convolution':<28}{'input':>16}{'out':>5}{'k':>3}{'s':>3}{'MMAC':>8}{'fwd ms':>8}{'fwd+bwd ms':>11}{'GMAC/s':>8}")
    for c in sorted(res['convs'], key=lambda c: -c['step_s']):
        shape = 'x'.join(map(str, c['in_shape'][1:]))
        rate = 3 * c['macs'] / c['step_s'] / 1e9 if c['input_grad'] else 2 * c['macs'] / c['step_s'] / 1e9
        print(f"{c['name']:<28}{shape:>16}{c['out_channels']:>5}{c['kernel'][0]:>3}{c['stride']:>3}{c['macs'] / 1e6:>8.1f}"
              f"{c['forward_s'] * 1e3:>8.2f}{c['step_s'] * 1e3:>11.2f}{rate:>8.1f}")
    step, conv = res['step_s'], res['conv_step_s']
    print(f"whole step, eager: {step * 1e3:.1f} ms; the convolutions alone: {conv * 1e3:.1f} ms ({conv / step:.0%}), "
          f"the AdamW step alone: {res['optimizer_step_s'] * 1e3:.1f} ms")
    if 'compiled_step_s' in res:
        print(f"whole step, forward compiled: {res['compiled_step_s'] * 1e3:.1f} ms")
    print(f"the convolutions' share of a {'compiled ' if 'compiled_step_s' in res else ''}step, round by round: {res['conv_share']:.0%}")
    print(f"{res['epochs']} epochs of {res['steps_per_epoch']} steps: the convolutions alone take {res['conv_floor_s']:.0f} s, "
          f"whole eager steps {step * res['steps_per_epoch'] * res['epochs']:.0f} s")

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--bs', type=int, default=128)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--steps', type=int, default=30, help='timed calls per measurement (their median is reported)')
    ap.add_argument('--epochs', type=int, default=13, help='epochs the floor is computed for (the quickest schedule measured needs 13)')
    ap.add_argument('--runs', type=int, default=1, help='repeat the whole measurement; every time reported is the median over the runs')
    ap.add_argument('--compile', action='store_true', help='also time the step with the forward compiled (as CompileS)')
    ap.add_argument('--json', help='write the figures to this file')
    args = ap.parse_args()
    runs = [profile_step(args.bs, args.threads, args.steps, args.epochs, args.compile) for _ in range(args.runs)]
    res = median_of_runs(runs) if args.runs > 1 else runs[0]
    report(res)
    if args.json:
        with open(args.json, 'w') as f: json.dump(res, f, indent=1)

if __name__ == '__main__': main()
