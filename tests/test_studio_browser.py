"""The studio as a person uses it: headless Chromium (driven by selenium) loads the page, types a
prompt, presses Generate and waits for the result's video to play; and the runner's --help.

Chromium comes from Debian: `apt-get install -y chromium chromium-driver` (.ci/run installs it).
The page serves the tiny runlocal model; with VIDEOGEN_WRITE_SCREENSHOT=1 it serves the
reference checkpoint (reference/world_t2) instead and writes the screenshot to docs/studio.png.
"""
import os
import pathlib
import subprocess
import sys

import pytest
from PIL import Image

pytestmark = pytest.mark.integration  # a browser, a server and a runner subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHROMIUM, DRIVER = '/usr/bin/chromium', '/usr/bin/chromedriver'
CHROMIUM_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
                  '--no-first-run', '--disable-background-networking',
                  '--disable-component-update', '--disable-sync', '--window-size=1400,1250')
WRITE_SCREENSHOT = os.environ.get('VIDEOGEN_WRITE_SCREENSHOT') == '1'
PAGE_SECONDS = 60    # the page's first render
SAMPLE_SECONDS = 300  # compiling and sampling the first video on a busy CPU


@pytest.fixture(scope='module')
def served(tmp_path_factory):
  """(URL, studio) of a page served in this process on a free loopback port."""
  pytest.importorskip('gradio', reason='the studio extra is not installed: pip install -e '
                      '".[studio]"')
  import test_studio  # pylint: disable=g-import-not-at-top
  from videogen.studio import layout, session  # pylint: disable=g-import-not-at-top
  workdir = (ROOT / 'reference' / 'world_t2' if WRITE_SCREENSHOT else
             test_studio.tiny_export(tmp_path_factory.mktemp('export')))
  studio = session.Studio.from_workdir(workdir, tmp_path_factory.mktemp('studio'))
  page = layout.build(studio)
  yield layout.launch(page, studio, port=test_studio.free_port(), block=False), studio
  page.close()


@pytest.fixture
def browser(tmp_path):
  if not os.path.exists(CHROMIUM) or not os.path.exists(DRIVER):
    pytest.skip(f'{CHROMIUM} or {DRIVER} is missing: install them with '
                '`apt-get install -y chromium chromium-driver`.')
  webdriver = pytest.importorskip('selenium.webdriver', reason='selenium is not installed: '
                                  'pip install -e ".[studio]"')
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for flag in (*CHROMIUM_FLAGS, f'--user-data-dir={tmp_path / "profile"}'):
    options.add_argument(flag)
  driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
  yield driver
  driver.quit()


def test_a_prompt_typed_in_the_page_becomes_a_playing_video(served, browser, tmp_path):
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=g-import-not-at-top
  url, studio = served
  browser.get(url)
  prompt, button = WebDriverWait(browser, PAGE_SECONDS).until(  # the page has rendered
      lambda d: (d.find_element(By.CSS_SELECTOR, '#prompt textarea'),
                 d.find_element(By.ID, 'run-text')))
  prompt.send_keys('A red circle drifts slowly to the right.')
  button.click()
  duration = WebDriverWait(browser, SAMPLE_SECONDS).until(lambda d: d.execute_script(
      "const v = document.querySelector('#result video');"
      'return v && v.readyState >= 1 && v.duration > 0 ? v.duration : null;'))
  frames = studio.results[-1].shape[0]
  assert duration == pytest.approx(frames / studio.choices.fps, abs=0.2)
  WebDriverWait(browser, PAGE_SECONDS).until(  # the world scores and the gallery show it too
      lambda d: 'adherence' in d.find_element(By.ID, 'scores').text)
  shot = ROOT / 'docs' / 'studio.png' if WRITE_SCREENSHOT else tmp_path / 'studio.png'
  browser.execute_script('window.scrollTo(0, 0);')
  assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
  if WRITE_SCREENSHOT:  # a 256-colour palette keeps the docs' picture small
    with Image.open(shot) as picture:
      picture.convert('RGB').quantize(256).save(shot, optimize=True)


def test_serve_explains_itself_and_listens_on_loopback_by_default():
  done = subprocess.run([sys.executable, 'experiments/serve.py', '--help'], cwd=ROOT,
                        capture_output=True, text=True, timeout=120, check=False)
  assert done.returncode in (0, 1), done.stderr  # absl exits 1 after printing the help
  assert 'Serves a web studio' in done.stdout and '--workdir' in done.stdout
  assert "--host: Address to listen on (default: this machine only" in done.stdout
  assert "(default: '127.0.0.1')" in done.stdout and '--[no]share' in done.stdout
