"""Cut the class-balanced Fashion-MNIST sample that ships with nntrain.

Usage:
    python tools/make_fashion_mnist_sample.py SOURCE_FOLDER [--out nntrain/data/fashion_mnist_sample]
        [--train-per-class 1000] [--test-per-class 200]

SOURCE_FOLDER holds the four original idx files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],
t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]), e.g. /usr/share/datasets/fashion-mnist.

The sample is deterministic: for each split it keeps, of each class, the first N images in file order, and writes
them in their original relative order as gzipped idx files (gzip level 9, mtime 0), so the same source always gives
the same bytes. The README.md written beside them records the licence, the method and the SHA-256 of each file;
LICENSE holds Zalando's MIT notice.
"""
import argparse, hashlib, sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from nntrain.dataloaders import FASHION_MNIST_SAMPLE_PATH, _find_idx, read_idx, write_idx

MIT_NOTICE = """\
The MIT License (MIT) Copyright © [2017] Zalando SE, https://tech.zalando.com

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and associated
documentation files (the “Software”), to deal in the Software without restriction, including without limitation
the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the Software, and to
permit persons to whom the Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or substantial portions of
the Software.

THE SOFTWARE IS PROVIDED “AS IS”, WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO
THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT,
TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

README = """\
# Fashion-MNIST sample

A class-balanced sample of [Fashion-MNIST](https://github.com/zalandoresearch/fashion-mnist) by Zalando Research,
in the dataset's original idx format (gzipped), read by `nntrain.dataloaders.load_fashion_mnist_sample()`.

| split | file prefix | images | per class |
| --- | --- | --- | --- |
| train | `train-` | {n_train:,} | {train_per_class:,} |
| test | `t10k-` | {n_test:,} | {test_per_class:,} |

## How it was cut

`python tools/make_fashion_mnist_sample.py SOURCE_FOLDER --train-per-class {train_per_class} --test-per-class {test_per_class}`,
with SOURCE_FOLDER holding the four original Fashion-MNIST files (MD5 of the gzipped originals:
train-images 8d4fb7e6c68d591d4c3dfef9ec88bf0d, train-labels 25c81989df183df01b3e8a0aad5dffbe,
t10k-images bef4ecab320f06d8554ea6380940ec79, t10k-labels bb300cfdad3c16e7a12a480ee83cd310).
From each split it keeps, of each of the 10 classes, the first images in file order, and keeps those in their
original relative order: a deterministic rule that needs no random seed. No pixel or label is changed. The files are gzipped at level 9 with mtime 0, so the script reproduces them byte for byte:

{checksums}

## Licence

Fashion-MNIST is distributed by Zalando under the MIT licence; this sample is a subset of it and is distributed
under the same licence (also in `LICENSE` beside this file):

```
{mit}
```

Citation: Han Xiao, Kashif Rasul, Roland Vollgraf. *Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
Learning Algorithms.* arXiv:1708.07747, 2017.
"""

def balanced_indices(labels, per_class):
    "Indices of the first `per_class` items of each class in `labels`, in their original order."
    classes = np.unique(labels)
    counts = np.bincount(labels)
    if (counts[classes] < per_class).any():
        raise SystemExit(f"asked for {per_class} per class but some class has only {counts[classes].min()}")
    keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in classes])
    return np.sort(keep)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('source', type=Path, help='folder with the four original Fashion-MNIST idx files')
    p.add_argument('--out', type=Path, default=FASHION_MNIST_SAMPLE_PATH, help='where to write the sample (default: %(default)s)')
    p.add_argument('--train-per-class', type=int, default=1000)
    p.add_argument('--test-per-class', type=int, default=200)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    written, sizes = [], {}
    for prefix, per_class in (('train', args.train_per_class), ('t10k', args.test_per_class)):
        images = read_idx(_find_idx(args.source, prefix, 'images', 3), ndim=3)
        labels = read_idx(_find_idx(args.source, prefix, 'labels', 1), ndim=1)
        keep = balanced_indices(labels, per_class)
        sizes[prefix] = len(keep)
        written.append(write_idx(args.out / f'{prefix}-images-idx3-ubyte.gz', images[keep]))
        written.append(write_idx(args.out / f'{prefix}-labels-idx1-ubyte.gz', labels[keep]))
    checksums = '\n'.join(f'- `{f.name}`: {f.stat().st_size:,} bytes, SHA-256 `{hashlib.sha256(f.read_bytes()).hexdigest()}`'
                          for f in written)
    (args.out / 'README.md').write_text(README.format(n_train=sizes['train'], n_test=sizes['t10k'], checksums=checksums, mit=MIT_NOTICE.rstrip('\n'),
                                                      train_per_class=args.train_per_class, test_per_class=args.test_per_class))
    (args.out / 'LICENSE').write_text('Fashion-MNIST sample: a subset of Fashion-MNIST by Zalando Research, '
                                      'https://github.com/zalandoresearch/fashion-mnist\n\n' + MIT_NOTICE)
    for f in written: print(f'{f}  {f.stat().st_size:,} bytes')

if __name__ == '__main__':
    main()
