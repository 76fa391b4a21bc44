"""How much faster is the in-memory path than the collate path, for one epoch of training batches?

Builds `DataLoaders.from_hf_dd` both ways over Fashion-MNIST (by default the bundled sample; pass the folder of
the full dataset's idx files with --data) and times one full epoch of iteration over the shuffled train loader,
interleaving the runs so both see the same machine state; prints the median epoch times and their ratio, and
the one-off cost of building each. Target: in memory >= 20x faster on the full 60,000-image train split.

    python benchmarks/bench_dataloaders.py [--data PATH] [--bs 256] [--reps 5] [--device cpu] [--encoding pgm|png] [--threads N] [--no-flatten]
"""
import argparse, functools, statistics, time

import torch

from nntrain.dataloaders import DataLoaders, hf_ds_collate_fn, load_fashion_mnist, load_fashion_mnist_sample

def epoch_time(dl, device):
    "Seconds to iterate once over `dl`, each batch moved to `device` (a no-op where it is already there)."
    t0 = time.perf_counter()
    for xb, yb in dl:
        xb, yb = xb.to(device), yb.to(device)
    if device.type == 'cuda': torch.cuda.synchronize()
    return time.perf_counter() - t0

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--data', default=None, help='folder with the Fashion-MNIST idx files (default: the bundled sample)')
    p.add_argument('--bs', type=int, default=256, help='batch size (default: %(default)s)')
    p.add_argument('--reps', type=int, default=5, help='timed epochs per path; medians are reported (default: %(default)s)')
    p.add_argument('--device', default='cpu', help='where batches must end up; the in-memory data lives there (default: %(default)s)')
    p.add_argument('--encoding', choices=['pgm', 'png'], default='pgm',
                   help="how the DatasetDict stores images: pgm (the loader's default) or png (as the Hub's copy does)")
    p.add_argument('--threads', type=int, default=None, help="torch.set_num_threads for the run (default: torch's own choice)")
    p.add_argument('--no-flatten', dest='flatten', action='store_false', help='images as 1x28x28 instead of 784 values')
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if args.threads: torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    dd = load_fashion_mnist(args.data, encoding=args.encoding) if args.data else load_fashion_mnist_sample(encoding=args.encoding)
    t_load = time.perf_counter() - t0
    collate_fn = functools.partial(hf_ds_collate_fn, flatten=args.flatten)
    t0 = time.perf_counter()
    collate = DataLoaders.from_hf_dd(dd, args.bs, collate_fn=collate_fn).train
    t_build_collate = time.perf_counter() - t0
    t0 = time.perf_counter()
    memory = DataLoaders.from_hf_dd(dd, args.bs, collate_fn=collate_fn, in_memory=True, device=device).train
    t_build_memory = time.perf_counter() - t0

    n = dd['train'].num_rows
    print(f"data: {args.data or 'bundled sample'} | train: {n:,} images | batch size {args.bs} | {args.encoding} images | flatten={args.flatten} | "
          f"device {device} | torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"one-off: load idx files {t_load:.2f}s | build collate loaders {t_build_collate:.3f}s | "
          f"build in-memory loaders {t_build_memory:.3f}s")
    epoch_time(collate, device); epoch_time(memory, device)   # warm-up
    times = {'collate': [], 'memory': []}
    for _ in range(args.reps):
        times['collate'].append(epoch_time(collate, device))
        times['memory'].append(epoch_time(memory, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, label in (('collate', 'collate path (DataLoader + hf_ds_collate_fn)'), ('memory', 'in-memory path (InMemoryLoader)')):
        print(f"{label:46s} median {med[k]:8.4f}s per epoch  ({n / med[k]:>12,.0f} images/s; runs: "
              + ', '.join(f'{t:.4f}' for t in times[k]) + ')')
    ratio = med['collate'] / med['memory']
    print(f"in memory is {ratio:.1f}x faster per epoch (target >= 20x on the full dataset)")
    return ratio

if __name__ == '__main__':
    main()
