"""What the learning-rate finder suggests for the recipe (chapter 7) on the full Fashion-MNIST, seed after seed.

For each seed it builds the learner `nntrain train` builds (the series' ResNet, AdamW, the fast path), runs the
finder as `nntrain train --lr-find` does (`nntrain.cli.run_lr_finder`), and prints the three lrs the finder can
give: `suggestion` (a tenth of `minimum`, what the command uses as the one-cycle peak), `minimum` (where the
smoothed loss is lowest) and `steepest` (where it falls fastest), each also as a multiple of the recipe's tuned
peak lr. A search the finder doubts (its `trouble`: the loss hardly fell, or the search ran out of batches) is
printed with the reason; one with no suggestion shows '-' and is left out of the medians. The recorded searches
can be written as JSON.

    python benchmarks/bench_lr_finder.py [--data ../shared/data/fashion_mnist] [--seeds 1 2 3] [--threads 2] [--json PATH]
"""
import argparse, json, platform, statistics, time, warnings

import torch

from nntrain.activations import set_seed
from nntrain.cli import build_learner, load_data, run_lr_finder
from nntrain.resnet import RECIPE

def search(dd, seed):
    "One search of the finder on the recipe's learner, seeded: its three lrs, the curve it recorded and its time."
    set_seed(seed)
    start = time.perf_counter()
    finder = run_lr_finder(build_learner(dd, RECIPE['epochs'], show_progress=False))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the trouble is recorded and printed instead
        suggestion = finder.suggestion
    return dict(seed=seed, suggestion=suggestion, minimum=finder.minimum, steepest=finder.steepest, trouble=finder.trouble,
                wall_s=time.perf_counter() - start, lrs=finder.lrs, losses=finder.losses)

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', default='../shared/data/fashion_mnist', help='a folder of Fashion-MNIST idx or parquet files')
    ap.add_argument('--seeds', type=int, nargs='+', default=[1, 2, 3])
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--json', help='write the results, with every recorded search, to this file')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dd, source = load_data(args.data, log=lambda msg: None)
    runs = [search(dd, seed) for seed in args.seeds]
    print(f"{source}; recipe peak lr {RECIPE['lr']:g}")
    print(f"{'seed':>4} {'suggestion':>11} {'minimum':>9} {'steepest':>9}   suggestion / recipe lr")
    for r in runs:
        s = r['suggestion']
        print(f"{r['seed']:>4} {'-' if s is None else format(s, '.2g'):>11} {r['minimum']:>9.2g} {r['steepest']:>9.2g}   "
              f"{'-' if s is None else format(s / RECIPE['lr'], '.2f') + 'x'}")
        if r['trouble']: print(f"     seed {r['seed']}: {r['trouble']}")
    suggested = [r for r in runs if r['suggestion'] is not None]
    medians = {k: statistics.median(r[k] for r in suggested) if suggested else None for k in ('suggestion', 'minimum', 'steepest')}
    if suggested:
        print(f"median {medians['suggestion']:>9.2g} {medians['minimum']:>9.2g} {medians['steepest']:>9.2g}   "
              f"{medians['suggestion'] / RECIPE['lr']:.2f}x")
    if args.json:
        res = dict(data=source, recipe_lr=RECIPE['lr'], threads=args.threads, torch=torch.__version__,
                   machine=platform.machine(), medians=medians, runs=runs)
        with open(args.json, 'w') as f: json.dump(res, f, indent=1)

if __name__ == '__main__': main()
