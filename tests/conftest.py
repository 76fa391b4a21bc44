"Shared pytest setup: the markers of the slower, out-of-process tests."


def pytest_configure(config):
    config.addinivalue_line('markers', 'browser: opens the built docs site (_docs/, made by tools/docs.sh) in headless '
                                       'Chromium; skipped when the site or Chromium is missing')
    config.addinivalue_line('markers', 'package: builds the wheel and sdist and installs the wheel into a fresh '
                                       'virtual environment (about a minute; needs the package index)')
