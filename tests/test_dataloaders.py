"Tests of nntrain.dataloaders that need files, processes or the command line: idx files on disk, corrupt input, the sample tool."
import gzip, hashlib, re, subprocess, sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import DatasetDict

import nntrain.dataloaders as dl
from nntrain.dataloaders import (FASHION_MNIST_CLASSES, DataLoaders, InMemoryLoader, hf_ds_collate_fn, load_fashion_mnist,
                                 load_fashion_mnist_sample, load_idx_dataset, load_mnist, read_idx, write_idx)

ROOT = Path(__file__).resolve().parents[1]

def fake_mnist(folder, n_train=30, n_test=10, gz=True, sep='-', seed=0):
    "Write a small MNIST-style dataset of random images as four idx files; return its arrays."
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (('train', n_train), ('t10k', n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        ext = '.gz' if gz else ''
        write_idx(folder / f'{prefix}-images{sep}idx3-ubyte{ext}', images)
        write_idx(folder / f'{prefix}-labels{sep}idx1-ubyte{ext}', labels)
        arrays[prefix] = images, labels
    return arrays

@pytest.mark.parametrize('gz', [True, False])
@pytest.mark.parametrize('sep', ['-', '.'])
def test_load_idx_dataset_plain_and_gzipped(tmp_path, gz, sep):
    arrays = fake_mnist(tmp_path, gz=gz, sep=sep)
    dd = load_fashion_mnist(tmp_path)
    assert isinstance(dd, DatasetDict) and list(dd) == ['train', 'test']
    assert dd['train'].features['label'].names == FASHION_MNIST_CLASSES
    for split, prefix in (('train', 'train'), ('test', 't10k')):
        images, labels = arrays[prefix]
        assert dd[split].num_rows == len(images)
        assert dd[split]['label'][:] == labels.tolist()
        img = dd[split][7]['image']
        assert img.mode == 'L' and img.size == (28, 28)
        assert np.array_equal(np.array(img), images[7])

def test_gzip_is_detected_by_name(tmp_path):
    a = np.arange(6, dtype=np.uint8)
    write_idx(tmp_path / 'x.gz', a)
    assert gzip.decompress((tmp_path / 'x.gz').read_bytes())[:4] == b'\x00\x00\x08\x01'
    write_idx(tmp_path / 'y', a)
    assert (tmp_path / 'y').read_bytes()[:4] == b'\x00\x00\x08\x01'
    assert np.array_equal(read_idx(tmp_path / 'x.gz'), read_idx(tmp_path / 'y'))

def test_png_encoding_gives_same_pixels(tmp_path):
    arrays = fake_mnist(tmp_path)
    a, b = load_mnist(tmp_path), load_mnist(tmp_path, encoding='png')
    assert a['train'].features['label'].names == [str(i) for i in range(10)]
    for i in (0, 5, 29):
        assert np.array_equal(np.array(a['train'][i]['image']), np.array(b['train'][i]['image']))
        assert np.array_equal(np.array(b['train'][i]['image']), arrays['train'][0][i])
    assert b['train'][0]['image'].format == 'PNG'

def test_corrupt_gzip(tmp_path):
    fake_mnist(tmp_path)
    f = tmp_path / 'train-images-idx3-ubyte.gz'
    f.write_bytes(f.read_bytes()[:len(f.read_bytes()) // 2])   # a cut-short download
    with pytest.raises(ValueError, match='damaged'): load_fashion_mnist(tmp_path)

def test_not_gzip_but_named_gz(tmp_path):
    fake_mnist(tmp_path)
    (tmp_path / 't10k-labels-idx1-ubyte.gz').write_bytes(b'<html>404 Not Found</html>')
    with pytest.raises(ValueError, match='damaged'): load_fashion_mnist(tmp_path)

def test_truncated_plain_file(tmp_path):
    fake_mnist(tmp_path, gz=False)
    f = tmp_path / 'train-images-idx3-ubyte'
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(ValueError, match='truncated'): load_fashion_mnist(tmp_path)

def test_extra_bytes(tmp_path):
    fake_mnist(tmp_path, gz=False)
    f = tmp_path / 'train-labels-idx1-ubyte'
    f.write_bytes(f.read_bytes() + b'\0')
    with pytest.raises(ValueError, match='promises'): load_fashion_mnist(tmp_path)

def test_bad_magic(tmp_path):
    fake_mnist(tmp_path, gz=False)
    f = tmp_path / 'train-images-idx3-ubyte'
    f.write_bytes(b'\x1f\x8b' + f.read_bytes()[2:])
    with pytest.raises(ValueError, match='not an idx file'): load_fashion_mnist(tmp_path)

def test_swapped_files(tmp_path):
    fake_mnist(tmp_path, gz=False)
    im, lb = tmp_path / 'train-images-idx3-ubyte', tmp_path / 'train-labels-idx1-ubyte'
    a, b = im.read_bytes(), lb.read_bytes()
    im.write_bytes(b); lb.write_bytes(a)
    with pytest.raises(ValueError, match='swapped'): load_fashion_mnist(tmp_path)

def test_count_mismatch(tmp_path):
    fake_mnist(tmp_path)
    write_idx(tmp_path / 'train-labels-idx1-ubyte.gz', np.zeros(29, np.uint8))
    with pytest.raises(ValueError, match='30 images but 29 labels'): load_fashion_mnist(tmp_path)

def test_label_out_of_range(tmp_path):
    fake_mnist(tmp_path)
    write_idx(tmp_path / 'train-labels-idx1-ubyte.gz', np.full(30, 10, np.uint8))
    with pytest.raises(ValueError, match='10 class names'): load_fashion_mnist(tmp_path)

def test_missing_file_names_folder_contents(tmp_path):
    fake_mnist(tmp_path)
    (tmp_path / 't10k-images-idx3-ubyte.gz').unlink()
    with pytest.raises(FileNotFoundError, match=r"t10k-images-idx3-ubyte\[\.gz\].*t10k-labels"): load_fashion_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match='not a folder'): load_fashion_mnist(tmp_path / 'nope')

def test_default_path_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(dl, 'FASHION_MNIST_PATH', tmp_path / 'absent')
    with pytest.raises(FileNotFoundError, match='dataset-fashion-mnist'): load_fashion_mnist()

def test_default_path(tmp_path, monkeypatch):
    fake_mnist(tmp_path)
    monkeypatch.setattr(dl, 'FASHION_MNIST_PATH', tmp_path)
    assert load_fashion_mnist()['train'].num_rows == 30

def test_bundled_sample_files():
    folder = dl.FASHION_MNIST_SAMPLE_PATH
    assert folder.is_dir() and folder.parent.parent == Path(dl.__file__).parent
    readme, licence = (folder / 'README.md').read_text(), (folder / 'LICENSE').read_text()
    assert 'MIT License' in licence and 'Zalando SE' in licence and 'MIT License' in readme
    for name, digest in re.findall(r'`(\S+\.gz)`: [\d,]+ bytes, SHA-256 `([0-9a-f]{64})`', readme):
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
    assert len(re.findall(r'SHA-256', readme)) == 4

def test_bundled_sample_is_balanced():
    dd = load_fashion_mnist_sample()
    assert dd['train'].features['label'].names == FASHION_MNIST_CLASSES
    assert np.bincount(dd['train']['label'][:]).tolist() == [1000] * 10
    assert np.bincount(dd['test']['label'][:]).tolist() == [200] * 10
    x = np.stack([np.array(im) for im in dd['test'].select(range(200))['image']])
    assert x.dtype == np.uint8 and 0 < x.mean() < 255

def test_make_sample_tool(tmp_path):
    src = tmp_path / 'src'
    arrays = fake_mnist(src, n_train=60, n_test=40, gz=False)
    outs = []
    for out in (tmp_path / 'a', tmp_path / 'b'):
        r = subprocess.run([sys.executable, str(ROOT / 'tools' / 'make_fashion_mnist_sample.py'), str(src), '--out', str(out),
                            '--train-per-class', '3', '--test-per-class', '2'], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        outs.append({f.name: f.read_bytes() for f in out.iterdir()})
    assert outs[0] == outs[1]   # deterministic, byte for byte
    assert {'LICENSE', 'README.md', 'train-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'} <= set(outs[0])
    dd = load_fashion_mnist(tmp_path / 'a')
    assert np.bincount(dd['train']['label'][:]).tolist() == [3] * 10
    assert np.bincount(dd['test']['label'][:]).tolist() == [2] * 10
    images, labels = arrays['train']
    keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:3] for c in range(10)]))
    assert np.array_equal(read_idx(tmp_path / 'a' / 'train-images-idx3-ubyte.gz'), images[keep])
    r = subprocess.run([sys.executable, str(ROOT / 'tools' / 'make_fashion_mnist_sample.py'), str(src), '--out',
                        str(tmp_path / 'c'), '--train-per-class', '7'], capture_output=True, text=True)
    assert r.returncode != 0 and 'per class' in r.stderr

@pytest.fixture(scope='module')
def sample():
    return load_fashion_mnist_sample()

@pytest.mark.parametrize('flatten', [True, False])
def test_in_memory_equals_collate_over_whole_epoch(sample, flatten):
    cf = partial(hf_ds_collate_fn, flatten=flatten)
    slow = DataLoaders.from_hf_dd(sample, 300, collate_fn=cf)
    fast = DataLoaders.from_hf_dd(sample, 300, collate_fn=cf, in_memory=True)
    assert len(slow.valid) == len(fast.valid) == 4
    for a, b in zip(slow.valid, fast.valid):
        assert isinstance(b, list) and len(b) == 2
        for ta, tb in zip(a, b):
            assert ta.dtype == tb.dtype and ta.shape == tb.shape and torch.equal(ta, tb)
    # the shuffled epoch covers every training item once
    ys = torch.cat([y for _, y in fast.train])
    assert torch.equal(ys.sort().values, torch.tensor(sorted(sample['train']['label'][:])))

def test_in_memory_order_follows_manual_seed(sample):
    dls = DataLoaders.from_hf_dd(sample, 1000, in_memory=True)
    torch.manual_seed(1); a = [y for _, y in dls.train]
    torch.manual_seed(1); b = [y for _, y in dls.train]
    c = [y for _, y in dls.train]
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and not all(torch.equal(x, y) for x, y in zip(a, c))

def test_collate_path_with_worker_processes(sample):
    dls = DataLoaders.from_hf_dd(DatasetDict(train=sample['train'].select(range(200)), valid=sample['test'].select(range(100))),
                                 50, num_workers=2)
    fast = DataLoaders.from_hf_dd(DatasetDict(train=sample['train'].select(range(200)), valid=sample['test'].select(range(100))),
                                  50, in_memory=True)
    for a, b in zip(dls.valid, fast.valid):
        assert all(torch.equal(x, y) for x, y in zip(a, b))

def test_split_names(sample):
    for name in ('validation', 'valid', 'test'):
        dls = DataLoaders.from_hf_dd(DatasetDict({'train': sample['train'], name: sample['test']}), 100)
        assert len(dls.valid) == 10
    with pytest.raises(KeyError, match=r"\['training', 'test'\]"):
        DataLoaders.from_hf_dd(DatasetDict(training=sample['train'], test=sample['test']), 100)

def test_in_memory_to_device(sample):
    dl_ = InMemoryLoader.from_hf_ds(sample['test'], 500)
    assert dl_.to('cpu') is dl_ and dl_.device == torch.device('cpu')
    # the meta device (shapes, no data) stands in for a GPU on a machine without one: the data and every batch move
    meta = InMemoryLoader.from_hf_ds(sample['test'], 500, shuffle=True).to('meta')
    xb, yb = next(iter(meta))
    assert (meta.device.type, xb.device.type, yb.device.type, xb.shape) == ('meta', 'meta', 'meta', (500, 784))
    assert next(iter(DataLoaders.from_hf_dd(sample, 256, in_memory=True, device='meta').train))[0].device.type == 'meta'
    if torch.cuda.is_available():
        dl_.to('cuda')
        xb, yb = next(iter(dl_))
        assert xb.is_cuda and yb.is_cuda
        ref = next(iter(InMemoryLoader.from_hf_ds(sample['test'], 500)))
        assert torch.equal(xb.cpu(), ref[0]) and torch.equal(yb.cpu(), ref[1])
        dls = DataLoaders.from_hf_dd(sample, 256, in_memory=True, device='cuda')
        assert next(iter(dls.train))[0].is_cuda
