"""The offline docs site (`_docs/`, built by `tools/docs.sh`) as a reader sees it, in headless Chromium.

Every page is opened once with Playwright (the system Chromium: no browser download) and checked: it renders (title,
sidebar of every chapter in notebook order, main content, a title with no markdown syntax left in it), it has an API
entry for every exported name and every method in DOCUMENTED_METHODS, each with exactly the id nbdev's links use, its
figures load (a cell that draws shows its figure), it shows no traceback or error output, its TOC shows the headings as
the page does and headings have quarto's ids, a module's re-exported names link to their entries, and every relative
link or image in the site resolves, anchors included. `test_renderer_fails_on_a_broken_anchor` checks, without the
site, that tools/docs_build.py fails on a link to an anchor no page has instead of pointing it elsewhere.
Screenshots of every page go to artifacts/docs/, the index's to artifacts/docs-index.png.

Skipped, saying why, when the site is not built or Chromium/Playwright is missing. Rebuild the site after changing a
notebook: the test reads what is in `_docs/`, and fails when a notebook has no page.
"""
import ast, importlib.util, json, os, re
from pathlib import Path
from collections import Counter
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / '_docs'
ARTIFACTS = ROOT / 'artifacts'
CHROMIUM = os.environ.get('NNTRAIN_CHROMIUM', '/usr/bin/chromium')
MANIFEST = SITE / 'site.json'


def _skip_reason():
    if not MANIFEST.exists() or not (SITE / 'index.html').exists():
        return f'the docs site is not built ({SITE.relative_to(ROOT)}/ has no index.html/site.json): run tools/docs.sh'
    if not Path(CHROMIUM).exists():
        return f'no Chromium at {CHROMIUM}: apt-get install chromium, or set NNTRAIN_CHROMIUM to its path'
    try: import playwright.sync_api  # noqa: F401
    except ImportError: return 'playwright is not installed: pip install playwright (it drives the system Chromium)'


SKIP = _skip_reason()
REQUIRED = os.environ.get('NNTRAIN_REQUIRE_DOCS_SITE') == '1'  # .ci/run sets it: there, a skip would hide the whole site


def test_the_site_and_the_browser_are_there_where_required():
    "In CI the browser tests must run: a missing site, Chromium or Playwright fails here instead of skipping them all."
    if REQUIRED: assert SKIP is None, SKIP
    elif SKIP: pytest.skip(SKIP)
PAGES = [p['page'] for p in json.loads(MANIFEST.read_text())['pages']] if MANIFEST.exists() else []
per_page = pytest.mark.parametrize('page', PAGES or [pytest.param(None, marks=pytest.mark.skip(reason=SKIP or 'no pages'))])


# ------------------------------------------------------------------ what the notebooks say the site must contain

def _notebooks():
    "Notebook -> (page, title), in sidebar order, as nbdev finds and names them."
    from nbdev.config import get_config
    from nbdev.doclinks import _nbpath2html, nbglob
    from nbdev.frontmatter import FrontmatterProc
    from nbdev.process import NBProcessor
    cfg = get_config(path=ROOT)
    nbs = sorted(nbglob(cfg.nbs_path, func=Path), key=lambda p: p.relative_to(cfg.nbs_path).as_posix())
    readme = cfg.get('readme_nb', 'index.ipynb')
    nbs = sorted(nbs, key=lambda p: p.relative_to(cfg.nbs_path).as_posix() != readme)
    res = {}
    for p in nbs:
        fm = getattr(NBProcessor(p, procs=FrontmatterProc, process=True).nb, 'frontmatter_', {}) or {}
        res[p] = (_nbpath2html(p.relative_to(cfg.nbs_path)).as_posix(), fm.get('title') or cfg.get('title'))
    return res, cfg


def _cells(nb_path):
    "Code cells of a notebook with their nbdev directives."
    from nbdev.process import NBProcessor
    return [c for c in NBProcessor(nb_path, procs=[]).nb.cells if c.cell_type == 'code']


def _exported_names(nb_path):
    "The names nbdev documents: top-level defs and classes of exported cells (as nbdev's add_show_docs finds them)."
    from nbdev.showdoc import showdoc_nm
    names = []
    for c in _cells(nb_path):
        d = c.directives_
        if not ({'export', 'exports'} & set(d)) or 'hide' in d: continue
        for o in ast.parse(c.source).body:
            if isinstance(o, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and (o.name[0] != '_' or o.name[:2] == '__'):
                names.append(showdoc_nm(o))
    return names


PLOT = re.compile(r'\bplt\.|\.plot\(|\bimshow\(|\bshow_images?\(|\bplot_\w*\(|\.hist\(|\bsubplots\(')

def _plots(nb_path, skip_flags):
    "Whether a shown, executed cell of the notebook draws a figure."
    for c in _cells(nb_path):
        d = c.directives_
        if {'export', 'exports', 'exporti', 'hide'} & set(d) or set(skip_flags) & set(d): continue
        if d.get('eval:', [''])[0].lower() == 'false': continue
        if PLOT.search(c.source): return True
    return False


# Methods a chapter's prose, README or index tells the reader to call, and the classmethod constructors: nbdev
# documents top-level names only, so each has a `show_doc(Class.method)` cell right after the cell that defines it.
# (Patched methods, `@patch def plot(self: X)`, are top-level names: nbdev documents those by itself.)
DOCUMENTED_METHODS = {
    '01_dataloaders.ipynb': ['InMemoryLoader.from_hf_ds', 'InMemoryLoader.to', 'DataLoaders.from_dsets',
                             'DataLoaders.from_hf_dd'],
    '02_learner.ipynb': ['Learner.fit', 'Learner.publish', 'Learner.get_preds', 'BatchAverage.compute',
                         'LRFindS.suggestion', 'LRFindS.minimum', 'LRFindS.steepest', 'LRFindS.plot'],
    '03_activations.ipynb': ['Hook.remove', 'ActivationStatsS.remove', 'ActivationStatsS.stats',
                             'ActivationStatsS.dead_share', 'ActivationStatsS.plot', 'ActivationStatsS.plot_hist',
                             'ActivationStatsS.plot_dead'],
    '04_acceleration.ipynb': ['BaseOptimizer.step', 'BaseOptimizer.add_param_group', 'BaseOptimizer.load_state_dict',
                              'SchedulerS.plot'],
    '05_resnet.ipynb': ['ResBlock.shortcut', 'ModelMonitorS.remove', 'MixUpS.mix', 'CutMixS.mix'],
    '06_checkpoint.ipynb': ['Resume.restore', 'Resume.take_back', 'HistoryS.plot'],
}


def _show_doc_names(nb_path):
    "The names a notebook's own `show_doc(...)` cells document (nbdev adds entries for the exported names only)."
    from nbdev.processors import _get_nm, _show_docs
    names = []
    for c in _cells(nb_path):
        try: trees = ast.parse(c.source).body
        except SyntaxError: continue
        names += [_get_nm(t) for t in _show_docs(trees)]
    return names


def _reexports(nb_path):
    "Names an exported cell lists in `_all_` (re-exported from another module) that the notebook does not define."
    own, names = set(_exported_names(nb_path)), []
    for c in _cells(nb_path):
        if not ({'export', 'exports'} & set(c.directives_)): continue
        for o in ast.parse(c.source).body:
            if isinstance(o, ast.Assign) and any(getattr(t, 'id', None) == '_all_' for t in o.targets):
                names += [n for n in ast.literal_eval(o.value) if n not in own]
    return names


MARKDOWN_IN_TEXT = re.compile(r'^\s*(#|>|[-*+]\s|\d+[.)]\s)|`|\*\*|__|\[[^\]]*\]\(|\$')

def _markdown_leak(text):
    "Markdown syntax left in text that should show rendered (a title, a sidebar entry): '# ', '> ', `, **, [..](..)."
    return bool(MARKDOWN_IN_TEXT.search(text or ''))


def slugify(text):
    "Pandoc's heading identifier (what quarto, and tools/docs_build.py, give headings)."
    s = ''.join(c for c in text if c.isalnum() or c in '_-. \n\t')
    s = re.sub(r'^[^a-z]+', '', re.sub(r'\s+', '-', s.strip()).lower())
    return s or 'section'


# ------------------------------------------------------------------ one visit of every page

FACTS_JS = r'''() => {
  const q = (s, r = document) => Array.from(r.querySelectorAll(s));
  const main = document.querySelector('main#content');
  const sidebar = document.querySelector('nav#sidebar');
  return {
    title: document.title,
    h1: document.querySelector('main h1.title')?.textContent.trim() ?? null,
    h1count: q('main h1').length,
    sidebar: q('#sidebar a').map(a => ({text: a.textContent.trim(), href: a.getAttribute('href'), active: a.classList.contains('active')})),
    sidebarBox: sidebar ? sidebar.getBoundingClientRect().toJSON() : null,
    mainText: main ? main.innerText.trim().length : 0,
    ids: q('[id]').map(e => e.id),
    refs: q('[href]').map(e => e.getAttribute('href')).concat(q('[src]').map(e => e.getAttribute('src'))),
    images: q('main img').map(i => ({src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth})),
    toc: q('#toc a').map(a => ({href: a.getAttribute('href'), text: a.innerText.trim()})),
    headings: Object.fromEntries(q('main h2[id], main h3[id], main h4[id]').map(h => [h.id, h.innerText.trim()])),
    docs: q('.doc-entry').map(d => {
      const h = d.querySelector('h1,h2,h3,h4,h5,h6');
      return {id: h?.id ?? null, name: h?.textContent.trim() ?? null, signature: d.querySelector('pre')?.innerText ?? '',
              doc: q('p', d).map(p => p.innerText.trim()).filter(t => t && t !== 'source').join(' ')};
    }),
    errors: q('.cell-output-error').map(e => e.innerText.slice(0, 3000)),
    stderr: q('.cell-output-stderr').map(e => e.innerText.slice(0, 3000)),
    outputs: q('.cell-output').map(e => e.innerText.slice(0, 20000)),
    buildError: document.querySelector('.build-error')?.innerText ?? null,
  };
}'''


@pytest.fixture(scope='module')
def site():
    if SKIP: pytest.skip(SKIP)
    from playwright.sync_api import sync_playwright
    facts, shots = {}, ARTIFACTS / 'docs'
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={'width': 1400, 'height': 900})
            problems = []
            page.on('console', lambda m: m.type == 'error' and problems.append(f'console error: {m.text}'))
            page.on('pageerror', lambda e: problems.append(f'page error: {e}'))
            page.on('requestfailed', lambda r: problems.append(f'failed to load {r.url}: {r.failure}'))
            for f in sorted(SITE.rglob('*.html')):
                rel = f.relative_to(SITE).as_posix()
                problems.clear()
                page.goto(f.as_uri(), wait_until='load')
                facts[rel] = dict(page.evaluate(FACTS_JS), problems=list(problems))
                page.screenshot(path=str(shots / (rel.replace('/', '_')[:-5] + '.png')), full_page=True)
                if rel == 'index.html': page.screenshot(path=str(ARTIFACTS / 'docs-index.png'))
        finally:
            browser.close()
    return facts


@pytest.fixture(scope='module')
def notebooks():
    return _notebooks()


@pytest.fixture(scope='module')
def manifest():
    return {p['page']: p for p in json.loads(MANIFEST.read_text())['pages']}


def _nb_of(page, notebooks):
    nbs, _ = notebooks
    return next(nb for nb, (pg, _) in nbs.items() if pg == page)


# ------------------------------------------------------------------ the checks

def test_every_notebook_has_a_page(site, notebooks):
    nbs, _ = notebooks
    missing = [f'{nb.name} -> {page}' for nb, (page, _) in nbs.items() if page not in site]
    assert not missing, f'notebooks without a page (rebuild with tools/docs.sh): {missing}'
    assert 'index.html' in site
    assert (ARTIFACTS / 'docs-index.png').stat().st_size > 10_000


@per_page
def test_page_renders(site, notebooks, page):
    f, (nbs, cfg) = site[page], notebooks
    nb = _nb_of(page, notebooks)
    title = re.sub(r'`([^`]*)`', r'\1', nbs[nb][1])  # titles are inline markdown: `code` shows as code
    assert f['h1'] == title, f'{page}: page heading {f["h1"]!r}, notebook title {title!r}'
    # the title itself must be plain text once rendered: a title cell written "# # Title" gives the title "# Title"
    leaks = [f'{where} {t!r}' for where, t in [('page heading', f['h1']), ('<title>', f['title'])]
             + [('sidebar entry', a['text']) for a in f['sidebar']] if _markdown_leak(t)]
    assert not leaks, f'{page}: markdown syntax in the rendered title (is {nb.name}\'s first cell "# Title"?): {leaks}'
    assert title in f['title'] and cfg.get('title') in f['title']
    assert f['mainText'] > 20, f'{page}: the main content is empty'
    assert f['h1count'] == 1, (f'{page}: {f["h1count"]} level-1 headings, the title only expected. Markdown lines '
                               f'starting with "# " render as headings: were {nb.name}\'s markdown cells written with '
                               f'"# " comment prefixes?')
    assert not f['problems'], f'{page}: {f["problems"]}'
    # the sidebar: every chapter, in notebook order, titled from the notebook, this page marked
    want = [(re.sub(r'`([^`]*)`', r'\1', t), pg) for pg, t in nbs.values()]
    got = [(a['text'], os.path.normpath(os.path.join(os.path.dirname(page), a['href']))) for a in f['sidebar']]
    assert got == want, f'{page}: sidebar {got} != chapters {want}'
    assert [a['active'] for a in f['sidebar']] == [pg == page for _, pg in want]
    assert f['sidebarBox'] and f['sidebarBox']['width'] > 100 and f['sidebarBox']['height'] > 50, 'sidebar not visible'


@per_page
def test_api_docs(site, notebooks, page):
    f, nb = site[page], _nb_of(page, notebooks)
    entries = {d['name']: d for d in f['docs']}
    problems = [f'{n}: {k} API entries' for n, k in Counter(d['name'] for d in f['docs']).items() if k > 1]
    names = _exported_names(nb) + _show_doc_names(nb)
    names += [n for n in DOCUMENTED_METHODS.get(nb.name, []) if n not in names]
    for name in dict.fromkeys(names):
        d = entries.get(name)
        if d is None: problems.append(f'{name}: no API entry'); continue
        # nbdev's links (`page.html#learner.fit`) land on the entry only if its id is exactly the slug: a heading
        # with the same text takes the slug first and the entry gets `-1`
        if d['id'] != slugify(name): problems.append(f'{name}: entry anchor {d["id"]!r}, links go to #{slugify(name)}')
        if name.split('.')[-1] not in d['signature']: problems.append(f'{name}: no signature ({d["signature"][:80]!r})')
        if not d['doc']: problems.append(f'{name}: no docstring in its API entry')
    assert not problems, f'{page} ({nb.name}):\n' + '\n'.join(problems)


def test_documented_methods_have_show_doc_cells(notebooks):
    "The list above and the notebooks agree: each listed method has its `show_doc` cell (or is a patched, top-level name)."
    nbs, _ = notebooks
    by_name = {nb.name: nb for nb in nbs}
    missing = [f'{nb}: {n}' for nb, names in DOCUMENTED_METHODS.items() for n in names
               if n not in _show_doc_names(by_name[nb]) + _exported_names(by_name[nb])]
    assert not missing, f'methods to document without a show_doc cell: {missing}'


@per_page
def test_reexports_link_to_their_entries(site, notebooks, page):
    "A module that re-exports names (`_all_`) lists them on its page, each linked to its API entry on its own page."
    nb = _nb_of(page, notebooks)
    entry_pages = {d['name']: (pg, d['id']) for pg, ff in site.items() for d in ff['docs']}
    refs = {os.path.normpath(os.path.join(os.path.dirname(page), r)) for r in site[page]['refs'] if '#' in r}
    problems = []
    for name in _reexports(nb):
        if name not in entry_pages: problems.append(f'{name}: no API entry on any page'); continue
        pg, id_ = entry_pages[name]
        if f'{pg}#{id_}' not in refs: problems.append(f'{name}: no link to {pg}#{id_}')
    assert not problems, f'{page} ({nb.name}) re-exports names it does not show:\n' + '\n'.join(problems)


@per_page
def test_toc_matches_headings(site, notebooks, page):
    "The on-page TOC shows each heading as the page does (code, math), and headings get the ids quarto gives them."
    f, nb = site[page], _nb_of(page, notebooks)
    problems = []
    for a in f['toc']:
        id_ = unquote(a['href'].lstrip('#'))
        if id_ not in f['headings']: problems.append(f'TOC entry {a["text"]!r}: no heading #{id_}')
        elif f['headings'][id_] != a['text']:
            problems.append(f'TOC entry {a["text"]!r} for heading {f["headings"][id_]!r}')
    from nbdev.process import NBProcessor
    fence = False
    for c in NBProcessor(nb, procs=[]).nb.cells:
        if c.cell_type != 'markdown': continue
        for line in c.source.splitlines():
            if line.lstrip().startswith(('```', '~~~')): fence = not fence
            m = None if fence else re.match(r'^(#{2,6})\s+(.*?)\s*#*\s*$', line)
            if not m: continue
            # pandoc's identifier is made from the heading's text, the TeX of its math and the text of its links
            text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', m.group(2))
            if slugify(text) not in f['ids']: problems.append(f'heading {m.group(2)!r}: no #{slugify(text)} on the page')
    assert not problems, f'{page} ({nb.name}):\n' + '\n'.join(problems)


def test_plotting_cells_show_their_figure(notebooks):
    "A shown, executed cell whose own statements draw a figure shows it (a `plt.close` in the same cell hides it)."
    nbs, cfg = notebooks
    draw = re.compile(r'(^|\.)(plot\w*|imshow|show_images?|subplots|hist)$')
    def calls(tree):
        v = tree.value if isinstance(tree, (ast.Expr, ast.Assign)) else None
        f = v.func if isinstance(v, ast.Call) else None
        return ast.unparse(f) if f is not None else ''
    problems = []
    for nb in nbs:
        f = ROOT / '_proc' / '_offline' / nb.relative_to(cfg.nbs_path).with_suffix('.ipynb')
        if not f.exists(): continue
        for c in json.loads(f.read_text())['cells']:
            src = ''.join(c.get('source', ''))
            if c['cell_type'] != 'code' or c.get('metadata', {}).get('docs_note') or src.lstrip().startswith('#| hide'): continue
            try: body = ast.parse('\n'.join(l for l in src.splitlines() if not l.lstrip().startswith('%')) ).body
            except SyntaxError: continue
            if not any(draw.search(calls(t)) for t in body): continue
            if not any(k.startswith('image/') for o in c.get('outputs', []) for k in o.get('data', {})):
                problems.append(f'{nb.name} cell {c.get("id")}: draws, but shows no figure: {src[:120]!r}')
    assert not problems, '\n'.join(problems)


def _docs_build():
    spec = importlib.util.spec_from_file_location('docs_build', ROOT / 'tools' / 'docs_build.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def test_renderer_fails_on_a_broken_anchor(tmp_path):
    "A misspelt anchor fails the build (naming page, link, notebook); only nbdev's links of method names are redirected."
    D = _docs_build()
    from nbdev.config import get_config
    pages = {'a.ipynb': Path('a.html'), 'b.ipynb': Path('b.html')}
    r = D.Renderer(get_config(path=ROOT), pages); r.html = {}
    def page(nb, md):
        cells = [dict(cell_type='markdown', source=md, metadata={})]
        r.render_page(Path(nb), dict(cells=cells, metadata={}), [(Path(n), pg, n) for n, pg in pages.items()], tmp_path)
    page('b.ipynb', '## Learner\n\n## Too small: $N(0, 1)$, no BatchNorm')
    ok = '[`Learner.fit`](b.ipynb#learner.fit), [`Learner.fit.x`](b.ipynb#learner.fit.x) and [m](b.ipynb#too-small-n0-1-no-batchnorm)'
    page('a.ipynb', ok)
    assert sorted(r.save_pages(tmp_path)) == ['a.html: #learner.fit -> #learner', 'a.html: #learner.fit.x -> #learner']
    assert 'href="b.html#learner"' in (tmp_path / 'a.html').read_text()
    for bad in ['[resuming](b.ipynb#resuming-a-rn)', '[`Learner.fti`](b.ipynb#learner.ft)', '[`_helper`](b.ipynb#_helper)',
                '[`Nope.fit`](b.ipynb#nope.fit)', '[here](#no-such-heading)']:
        page('a.ipynb', ok + '\n\n' + bad)
        with pytest.raises(D.BrokenAnchors) as e: r.save_pages(tmp_path)
        assert len(e.value.broken) == 1 and 'a.html' in str(e.value) and 'a.ipynb' in str(e.value), (bad, str(e.value))
        assert repr(re.search(r'\]\(([^)]*)\)', bad).group(1).replace('b.ipynb', 'b.html')) in str(e.value), str(e.value)


@per_page
def test_figures_load(site, notebooks, manifest, page):
    f, nb = site[page], _nb_of(page, notebooks)
    loaded = [i for i in f['images'] if i['complete'] and i['width'] > 0]
    broken = [i['src'] for i in f['images'] if i not in loaded]
    assert not broken, f'{page}: images that did not load: {broken}'
    n = manifest[page]['figures']
    assert len(loaded) >= n, f'{page}: {n} figures rendered, {len(loaded)} loaded'
    if _plots(nb, notebooks[1].get('tst_flags', '').split()):
        assert n > 0, f'{page}: {nb.name} plots, but the page has no figure'


@per_page
def test_no_error_output(site, page):
    f = site[page]
    assert not f['buildError'], f'{page}: a cell raised while the docs were built:\n{f["buildError"][:3000]}'
    assert not f['errors'], f'{page}: error outputs:\n' + '\n---\n'.join(f['errors'])
    bad = [s for s in f['stderr'] if 'Traceback' in s or re.search(r'\w*Error\b', s)]
    assert not bad, f'{page}: errors on stderr:\n' + '\n---\n'.join(bad)
    tbs = [o for o in f['outputs'] if 'Traceback (most recent call last)' in o]
    assert not tbs, f'{page}: tracebacks in outputs:\n' + '\n---\n'.join(tbs)


def test_internal_links_resolve(site):
    broken = []
    for page, f in site.items():
        for ref in f['refs']:
            u = urlsplit(ref)
            if u.scheme or ref.startswith('//'): continue  # external, data: and the like
            target = (SITE / page).parent / unquote(u.path) if u.path else SITE / page
            target = Path(os.path.normpath(target))
            if SITE not in target.parents and target != SITE: broken.append(f'{page}: {ref} leaves the site'); continue
            if not target.is_file(): broken.append(f'{page}: {ref} (no file {target.relative_to(SITE)})'); continue
            if u.fragment:
                rel = target.relative_to(SITE).as_posix()
                if rel not in site: broken.append(f'{page}: {ref} (anchor into a non-page)')
                elif unquote(u.fragment) not in site[rel]['ids']: broken.append(f'{page}: {ref} (no #{u.fragment} in {rel})')
    assert not broken, 'broken links:\n' + '\n'.join(broken)
