"""Convert notebooks to and from a plain-text cell format, for editing notebooks in a text editor.

The text format is one cell after another, each opened by a marker line:

    # %% [markdown]      a markdown cell (its lines follow as they are)
    # %%                 a code cell

Usage:
    python tools/nbpy.py to-text nbs/02_learner.ipynb > /tmp/02_learner.txt
    python tools/nbpy.py to-nb /tmp/02_learner.txt nbs/02_learner.ipynb

The notebook stays the source of the library: this only edits it. Run `nbdev_clean` afterwards.
"""
import hashlib, json, sys
from pathlib import Path

MD, CODE = '# %% [markdown]', '# %%'

def text_to_cells(text):
    "Split text into (cell_type, source) pairs at marker lines."
    cells, kind, lines = [], None, []
    def flush():
        if kind is not None:
            cells.append((kind, '\n'.join(lines).strip('\n')))
    for line in text.splitlines():
        if line.rstrip() in (MD, CODE):
            flush()
            kind, lines = ('markdown' if line.rstrip() == MD else 'code'), []
        else:
            lines.append(line)
    flush()
    return cells

def cell_ids(cells, old_nb=None):
    "Ids for `cells`: an unchanged cell keeps its id from `old_nb`; a new one gets an id derived from its source."
    old = {}
    for c in (old_nb or {}).get('cells', []):
        if 'id' in c: old.setdefault((c['cell_type'], ''.join(c['source'])), []).append(c['id'])
    ids, used = [], set()
    for kind, src in cells:
        reuse = [i for i in old.get((kind, src), []) if i not in used]
        cid = reuse[0] if reuse else hashlib.sha1(f'{kind}{src}'.encode()).hexdigest()[:8]
        while cid in used: cid = hashlib.sha1(cid.encode()).hexdigest()[:8]
        used.add(cid); ids.append(cid)
    return ids

def cells_to_nb(cells, old_nb=None):
    "A minimal nbformat-4 notebook dict from (cell_type, source) pairs, keeping unchanged cells' ids from `old_nb`."
    def cell(kind, src, cid):
        c = {'cell_type': kind, 'id': cid, 'metadata': {}, 'source': src.splitlines(keepends=True)}
        if kind == 'code': c.update(execution_count=None, outputs=[])
        return c
    return {'cells': [cell(k, s, i) for (k, s), i in zip(cells, cell_ids(cells, old_nb))],
            'metadata': {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}},
            'nbformat': 4, 'nbformat_minor': 5}

def nb_to_text(nb):
    "The text form of a notebook dict."
    out = []
    for c in nb['cells']:
        out.append(MD if c['cell_type'] == 'markdown' else CODE)
        out.append(''.join(c['source']))
    return '\n'.join(out) + '\n'

if __name__ == '__main__':
    cmd, *args = sys.argv[1:]
    if cmd == 'to-nb':
        src, dst = args
        old = json.loads(Path(dst).read_text()) if Path(dst).exists() else None
        nb = cells_to_nb(text_to_cells(Path(src).read_text()), old)
        tmp = Path(dst).with_suffix('.ipynb.tmp')  # write then rename: readers never see half a notebook
        tmp.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
        tmp.replace(dst)
    elif cmd == 'to-text':
        sys.stdout.write(nb_to_text(json.loads(Path(args[0]).read_text())))
    else:
        sys.exit(__doc__)
