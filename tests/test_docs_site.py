"""The offline docs site (`_docs/`, built by `tools/docs.sh`) as a reader sees it, in headless Chromium.

Every page is opened once with Playwright (the system Chromium: no browser download) and checked: it renders (title,
sidebar of every chapter in notebook order, main content), it has an API entry for every exported name, its figures
load, it shows no traceback or error output, and every relative link or image in the site resolves, anchors included.
Screenshots of every page go to artifacts/docs/, the index's to artifacts/docs-index.png.

Skipped, saying why, when the site is not built or Chromium/Playwright is missing. Rebuild the site after changing a
notebook: the test reads what is in `_docs/`, and fails when a notebook has no page.
"""
import ast, json, os, re
from pathlib import Path
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
    problems = []
    for name in _exported_names(nb):
        d = entries.get(name)
        if d is None: problems.append(f'{name}: no API entry'); continue
        if not (d['id'] or '').startswith(slugify(name)): problems.append(f'{name}: entry anchor {d["id"]!r}')
        if name.split('.')[-1] not in d['signature']: problems.append(f'{name}: no signature ({d["signature"][:80]!r})')
        if not d['doc']: problems.append(f'{name}: no docstring in its API entry')
    assert not problems, f'{page} ({nb.name}):\n' + '\n'.join(problems)


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
