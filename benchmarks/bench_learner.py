"""How much does the Learner cost over a hand-written PyTorch loop?

Trains the same small MLP on the same in-memory batches with (a) a plain loop and (b) nntrain's Learner,
interleaving the runs so both see the same machine state, and prints median epoch times and their ratio, and the
median of the ratios of each back-to-back pair (less sensitive to the machine's speed drifting during the run),
with a bootstrap 95% interval for that median: differences of a few tenths of a percent are at the edge of what
one run can resolve on a shared machine, and the interval says how sure the figure is.
A small model is where the loop's own overhead shows most. Targets: Learner <= 1.01x the plain loop, and
Learner + MetricsS <= 1.02x the plain loop doing the same metric bookkeeping by hand.
A third row turns the Learner's per-batch non-finite-loss check off, to show what that check costs, and a fourth
compares the Learner with its check to a hand-written loop that makes the same check (reads each batch's loss with
`loss.item()` and stops on nan/inf, as PyTorch's tutorials read the loss to log it): the same work on both sides, as
in the MetricsS row.
Every run trains the same model object, its weights reset in place first: a fresh model per run lands its tensors
at new addresses, and that alone moved single runs by about 1% here, more than the overhead being measured.
A last line times the Learner's own machinery (dispatch, bookkeeping, the check) with the model's work stubbed
out, in nanoseconds a batch: the part of the ratio that is the Learner's code and not the machine's noise.

    python benchmarks/bench_learner.py [--runs 3] [--epochs 1] [--reps 121] [--bs 128] [--hidden 64] [--threads 1]
                                       [--json FILE]

Each run times every case; the closing table gives each case's median over the runs. Short pairs (one epoch each)
and many of them resolve a fraction of a percent better than long ones: drift within a pair is what they don't cancel.

One thread by default: a model this small runs fastest on one, and a busy second core then doesn't distort the ratio.
"""
import argparse, json, math, random, statistics, time
from functools import partial

import torch
import torch.nn.functional as F
import torcheval.metrics as tem
from torch import nn

from nntrain.learner import Learner, MetricsS

def sample_batches(bs):
    "The bundled Fashion-MNIST sample as a list of flattened float batches held in memory."
    from nntrain.dataloaders import DataLoaders, load_fashion_mnist_sample
    dls = DataLoaders.from_hf_dd(load_fashion_mnist_sample(), batch_size=bs, in_memory=True)
    return [[x.clone(), y.clone()] for x, y in dls.train]  # fixed batches: both loops see the same data

def make_model(hidden, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))

def plain_loop(model, batches, epochs, lr, metrics=None, check_finite=False):
    "The loop a PyTorch user writes by hand; with `metrics`, the same bookkeeping MetricsS does; with `check_finite`, the Learner's loss check."
    opt = torch.optim.SGD(model.parameters(), lr)
    model.train()
    for _ in range(epochs):
        if metrics is not None:
            for m in metrics.values(): m.reset()
            loss_sum, count = 0., 0
        for xb, yb in batches:
            preds = model(xb)
            loss = F.cross_entropy(preds, yb)
            if check_finite and not math.isfinite(loss.item()): raise FloatingPointError(f'the loss is {loss.item()}')
            loss.backward()
            opt.step()
            opt.zero_grad()
            if metrics is not None:
                for m in metrics.values(): m.update(preds.detach(), yb)
                loss_sum, count = loss_sum + loss.detach() * len(yb), count + len(yb)
        if metrics is not None: [m.compute() for m in metrics.values()], (loss_sum / count).item()

def learner_loop(model, batches, epochs, lr, metrics=None, check_finite=True):
    subs = [MetricsS(**metrics)] if metrics is not None else []
    for s in subs: s._log = lambda row: None  # time the bookkeeping, not printing
    Learner(model, _DLs(batches), F.cross_entropy, torch.optim.SGD, lr, subs, check_finite=check_finite).fit(epochs, valid=False)

class _DLs:
    def __init__(self, train): self.train, self.valid = train, None

def timed(fn, *args, **kw):
    t = time.perf_counter(); fn(*args, **kw); return time.perf_counter() - t

def resetter(model):
    "A function that puts `model`'s weights back to what they are now, in place (same tensors, same addresses)."
    start = [p.detach().clone() for p in model.parameters()]
    def reset():
        with torch.no_grad():
            for p, p0 in zip(model.parameters(), start): p.copy_(p0)
        return model
    return reset

WARMUP_PAIRS = 5

def compare(batches, hidden, epochs, reps, with_metrics, check_finite=True, plain_checks=False):
    def metrics(): return {'accuracy': tem.MulticlassAccuracy()} if with_metrics else None
    model = resetter(make_model(hidden))  # one model for every run of both loops
    plain, learn = [], []
    learner, hand = partial(learner_loop, check_finite=check_finite), partial(plain_loop, check_finite=plain_checks)
    for _ in range(WARMUP_PAIRS):  # the first runs of a process are slower and uneven: leave them out
        for fn in (hand, learner): timed(fn, model(), batches, epochs, 0.1, metrics())
    for r in range(reps):  # interleaved, alternating which goes first
        pair = [(plain, hand), (learn, learner)]
        for times, fn in (pair if r % 2 == 0 else pair[::-1]):
            times.append(timed(fn, model(), batches, epochs, 0.1, metrics()) / epochs)
    ratios = [l / p for p, l in zip(plain, learn)]  # each rep's pair ran back to back: drift cancels
    return statistics.median(plain), statistics.median(learn), statistics.median(ratios), bootstrap_ci(ratios)

def bootstrap_ci(xs, n=2000, seed=0):
    "A 95% bootstrap interval for the median of `xs`."
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(xs, k=len(xs))) for _ in range(n))
    return meds[int(0.025 * n)], meds[int(0.975 * n) - 1]

def warm_up(batches, hidden, seconds=8):
    "Train both loops for a few seconds first: this machine runs the first ~5 s of a process slower and unevenly."
    model, end = resetter(make_model(hidden)), time.perf_counter() + seconds
    while time.perf_counter() < end:
        for fn in (plain_loop, learner_loop): fn(model(), batches, 1, 0.1)

class _StubLearner(Learner):
    "A Learner whose model, loss, backward and optimizer do no work: what is left is the Learner's own code."
    def predict(self): self.preds = self.batch[0]
    def get_loss(self): self.loss = self.batch[1]
    def backward(self): pass
    def step(self): pass
    def zero_grad(self): pass

def machinery_ns(n=100_000, reps=5):
    "Nanoseconds a batch that the Learner's own code (dispatch, bookkeeping, the finite check) adds to a bare loop."
    loss = torch.tensor(0.5)
    batches = [[None, loss]] * n
    def bare():
        for xb, yb in batches: preds, l = xb, yb
    def learner(): _StubLearner(nn.Linear(1, 1), _DLs(batches)).fit(1, valid=False)
    bare_s, learn_s = (min(timed(f) for _ in range(reps)) for f in (bare, learner))
    return (learn_s - bare_s) / n * 1e9

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--epochs', type=int, default=1)
    ap.add_argument('--reps', type=int, default=121)
    ap.add_argument('--bs', type=int, default=128)
    ap.add_argument('--hidden', type=int, default=64)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--json', help='also write the figures to this file')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    batches = sample_batches(a.bs)
    print(f'MLP 784-{a.hidden}-10, {len(batches)} batches of {a.bs}, {a.runs} runs of {a.epochs} epoch(s) x {a.reps} '
          f'reps, torch {torch.__version__}, {torch.get_num_threads()} threads')
    cases = (('no subscribers', False, True, False), ('MetricsS (accuracy, loss)', True, True, False),
             ('no subscribers, no nan check', False, False, False),  # what the per-batch finite-loss check costs
             ('both check the loss', False, True, True))  # the same check in the hand-written loop
    warm_up(batches, a.hidden)
    paired, steps = {name: [] for name, *_ in cases}, []
    for run in range(a.runs):
        print(f"run {run + 1}\n{'case':<31}{'plain loop s/epoch':>20}{'Learner s/epoch':>18}{'ratio':>8}{'paired':>8}"
              f"{'paired 95% CI':>16}")
        for name, with_metrics, check_finite, plain_checks in cases:
            p, l, r, (lo, hi) = compare(batches, a.hidden, a.epochs, a.reps, with_metrics, check_finite, plain_checks)
            print(f'{name:<31}{p:>20.4f}{l:>18.4f}{l / p:>8.3f}{r:>8.3f}{f"{lo:.3f}-{hi:.3f}":>16}')
            paired[name].append(r)
            if not with_metrics and not plain_checks: steps.append(p / len(batches))
    print(f"median of {a.runs} runs (paired ratio, and its range over the runs)")
    for name, rs in paired.items():
        print(f'{name:<31}{statistics.median(rs):>8.3f}{f"{min(rs):.3f}-{max(rs):.3f}":>16}')
    ns, step = machinery_ns(), statistics.median(steps)
    print(f"the Learner's own code: {ns:.0f} ns a batch, {ns / (step * 1e9):.2%} of the plain loop's "
          f"{step * 1e6:.0f} us step (model, loss and optimizer stubbed out)")
    if a.json:
        out = dict(torch=torch.__version__, threads=torch.get_num_threads(), model=f'MLP 784-{a.hidden}-10', bs=a.bs,
                   batches=len(batches), runs=a.runs, epochs=a.epochs, reps=a.reps, step_us=step * 1e6,
                   machinery_ns=ns, paired={k: dict(median=statistics.median(v), runs=v) for k, v in paired.items()})
        with open(a.json, 'w') as f: json.dump(out, f, indent=1)

if __name__ == '__main__':
    main()
