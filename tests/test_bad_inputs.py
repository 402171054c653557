"""Bad inputs each get one sentence naming the value and the fix (the table: docs/bad_inputs.md).

Configs (keys, arguments, steps), runners (settings, output folders, checkpoint steps), files
(videos, caption tables) and prompts (prompt files, prompt lists). Nothing here trains or samples:
every check fails before the model would run.
"""
import fractions
import json
import pathlib

from absl import flags
import av
import numpy as np
import pytest

from configs import vae_world
from configs import world as world_config
from videogen.core import config_args
from videogen.core import media
from videogen.data import folder_source
from videogen.data import preview
from videogen.inference import generate
from videogen.inference import prompting
from videogen.runtime import dit_run
from videogen.runtime import vae_run

REPO = pathlib.Path(__file__).resolve().parents[1]


# Configs.

@pytest.mark.parametrize('path, message', [
    ('trian.steps', r"config has no key 'trian' \(in --config.trian.steps\): use one of its "
                    r'nearest valid keys, train, .* e.g. --config.train.steps\.$'),
    ('train.stepz', r"config.train has no key 'stepz' .* nearest valid keys, steps, .* e.g. "
                    r'--config.train.steps\.$'),
    ('data.sizes.sidee', r"config.data.sizes has no key 'sidee' .* nearest valid keys, side, "
                         r'.* e.g. --config.data.sizes.side\.$'),
    ('train.steps.every', r'config.train.steps is a value \(int\), not a group of keys: set it '
                          r'whole with --config.train.steps=\.\.\.$'),
])
def test_a_config_key_typo_names_the_key_and_the_nearest_valid_ones(path, message):
  config = world_config.get_config('runlocal=True')
  with pytest.raises(ValueError, match=message):
    config_args.check_override(config, path)
  config_args.check_override(config, 'data.sizes.side')  # a valid key passes


def test_runners_stop_on_a_config_key_typo_with_one_line():
  argv = ['train.py', '--config=configs/world.py:runlocal=True', '--config.train.stepz=3']
  with pytest.raises(SystemExit, match=r"^FATAL Flags parsing error: config.train has no key "
                                       r"'stepz' .*steps"):
    config_args.define_config_file('config', 'configs/world.py', 'Config.',
                                   flag_values=flags.FlagValues(), sys_argv=argv)
  good = flags.FlagValues()
  argv = ['train.py', '--config', str(REPO / 'configs/world.py'), '--config.train.steps=3']
  handle = config_args.define_config_file('config', 'configs/world.py', 'Config.',
                                          flag_values=good, sys_argv=argv)
  good(argv)
  assert handle.value.train.steps == 3


def test_every_runner_checks_its_config_overrides():
  unchecked = [p.name for p in sorted((REPO / 'experiments').glob('*.py'))
               if 'config_flags.DEFINE_config_file' in p.read_text()]
  assert not unchecked, f'use config_args.define_config_file in {unchecked}'


@pytest.mark.parametrize('arg, message', [
    ('varient=S/2', r"unknown config argument 'varient': use one of variant, .* e.g. variant="),
    ('runlocal', r"config argument 'runlocal' is not key=value: write e.g. \"runlocal=true\"\.$"),
    ('S/2', r"config argument 'S/2' is not key=value: write e.g. \"variant=\.\.\.\"\.$"),
    ('runlocal=yes', r"config argument runlocal='yes' is not a boolean: write runlocal=true or "
                     r'runlocal=false\.$'),
])
def test_a_bad_config_argument_names_the_fix(arg, message):
  with pytest.raises(ValueError, match=message):
    world_config.get_config(arg)


@pytest.mark.parametrize('steps', [0, -5])
def test_zero_or_negative_train_steps_stop_the_build(steps):
  message = (rf'^train.steps is {steps}: training stops at that step, so use a whole number of '
             r'at least 1, e.g. --config.train.steps=6000\.$')
  for build, config in ((dit_run.build, world_config.get_config('runlocal=True')),
                        (vae_run.build, vae_world.get_config('runlocal=True'))):
    config.train.steps = steps
    with pytest.raises(ValueError, match=message):  # before the text encoder or mesh is made
      build(config)


# Runners.

@pytest.mark.parametrize('settings, message', [
    (dict(steps=0), r'^steps 0 must be a whole number of at least 1: use e.g. 25 sampler steps'),
    (dict(steps=-3), r'^steps -3 must be a whole number of at least 1'),
    (dict(steps=2.5), r'^steps 2.5 must be a whole number'),
    (dict(method='rk4'), r"^method 'rk4' is unknown: use one of \('euler', 'heun', 'ab2', "
                         r"'unipc', 'fm_euler'\)"),
    (dict(cfg_scale=0.5), r'^cfg_scale 0.5 is below 1, which steers away from what it guides: '
                          r'use 1 for no guidance or more, e.g. --cfg 4\.$'),
    (dict(cfg_scale=0.0), r'^cfg_scale 0.0 is below 1'),
    (dict(cfg_scale=float('nan')), r'^cfg_scale nan must be a finite number'),
    (dict(frame_cfg_scale=0.5), r'^frame_cfg_scale 0.5 is below 1.* e.g. --frame_cfg 4\.$'),
    (dict(cfg_min_t=1.0), r'^cfg_min_t 1.0 must be in \[0, 1\): the time below which text '
                          r'guidance is off, e.g. 0.5; 0 guides at every time\.$'),
    (dict(height=0), r'^height 0 must be at least 1: leave it unset \(None\)'),
    (dict(num_frames=-1), r'^num_frames -1 must be at least 1'),
])
def test_bad_sample_settings_fail_before_any_model_loads(settings, message):
  with pytest.raises(ValueError, match=message):
    generate.SampleSettings(**settings)
  generate.SampleSettings(cfg_scale=1.0, frame_cfg_scale=1.0, steps=1)  # the edges are fine


def test_an_unwritable_output_folder_fails_before_sampling(tmp_path):
  blocker = tmp_path / 'file.txt'
  blocker.write_text('not a folder')
  message = (rf"^cannot write to output folder '{blocker / 'out'}' \(.+\): choose a folder you "
             r'can write, e.g. --out=outputs/samples$')
  with pytest.raises(OSError, match=message):
    media.check_writable_folder(blocker / 'out')
  with pytest.raises(OSError, match=message):  # no Generator needed: nothing is sampled
    prompting.sample_and_write(None, 'text', ['a red circle'], 0, generate.SampleSettings(),
                               blocker / 'out')
  with pytest.raises(OSError, match='e.g. --out=outputs/world$'):
    preview.check_writable(blocker / 'out')
  assert media.check_writable_folder(tmp_path / 'new' / 'folder').is_dir()


def _fake_run(workdir: pathlib.Path, steps=()) -> pathlib.Path:
  """A run folder with a config and empty step folders: enough to be checked, not restored."""
  workdir.mkdir(parents=True)
  config = world_config.get_config('runlocal=True')
  (workdir / 'config.json').write_text(config.to_json_best_effort())
  for step in steps:
    (workdir / 'checkpoints' / str(step)).mkdir(parents=True)
  return workdir


def test_a_step_that_was_not_saved_lists_the_saved_ones(tmp_path):
  workdir = _fake_run(tmp_path / 'run', steps=(2, 4))
  (workdir / 'checkpoints' / '6.orbax-checkpoint-tmp').mkdir()  # a save killed midway
  with pytest.raises(FileNotFoundError, match=(
      rf"^no checkpoint at step 3 in '{workdir}': pick one of \[2, 4\] with --step, or omit "
      r'--step for the newest \(4\)\.$')):
    generate.Generator.from_workdir(workdir, step=3)
  assert generate.saved_steps(workdir) == [2, 4]


def test_a_run_without_checkpoints_or_config_says_train_first(tmp_path):
  workdir = _fake_run(tmp_path / 'run')
  with pytest.raises(FileNotFoundError, match=rf"^no checkpoint in '{workdir}': train first "
                                              'with experiments/train.py --workdir'):
    generate.Generator.from_workdir(workdir)
  with pytest.raises(FileNotFoundError, match=r"^no trained run in '.*nothing' \(missing "
                                              r'config.json\): train first'):
    generate.Generator.from_workdir(tmp_path / 'nothing')


def test_an_export_holds_its_one_step_of_ema_weights(tmp_path):
  export = _fake_run(tmp_path / 'export')
  (export / 'params').mkdir()
  (export / 'export.json').write_text(json.dumps({'step': 6000}))
  with pytest.raises(FileNotFoundError, match=(
      rf"^'{export}' is an export of step 6000 only, not 500: omit --step, or sample the "
      r"training run's workdir for other steps\.$")):
    generate.Generator.from_workdir(export, step=500)
  with pytest.raises(ValueError, match=(
      rf"^'{export}' is an export, which holds the moving average of the weights alone: drop "
      r"--raw_weights \(use_ema=False\), or pass the training run's workdir for the trained "
      r"weights\.$")):
    generate.Generator.from_workdir(export, use_ema=False)


# Files.

def _jpeg_packets(height: int, width: int):
  """One MJPEG frame of a flat colour, encoded on its own (its size is its own)."""
  codec = av.CodecContext.create('mjpeg', 'w')
  codec.width, codec.height, codec.pix_fmt = width, height, 'yuvj420p'
  codec.time_base = fractions.Fraction(1, 8)
  frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 90, np.uint8), format='rgb24')
  return [*codec.encode(frame.reformat(format='yuvj420p')), *codec.encode(None)]


def _write_resizing_video(path: pathlib.Path, sizes) -> pathlib.Path:
  """An mkv of MJPEG frames whose size changes midway, as a spliced recording's can."""
  with av.open(str(path), 'w', format='matroska') as container:
    stream = container.add_stream('mjpeg', rate=8)
    stream.width, stream.height, stream.pix_fmt = sizes[0][1], sizes[0][0], 'yuvj420p'
    for index, (height, width) in enumerate(sizes):
      for packet in _jpeg_packets(height, width):
        packet.stream, packet.pts, packet.dts = stream, index, index
        packet.time_base = fractions.Fraction(1, 8)
        container.mux(packet)
  return path


def test_a_video_whose_frames_differ_in_size_names_the_sizes(tmp_path):
  path = _write_resizing_video(tmp_path / 'spliced.mkv', [(16, 16), (16, 16), (32, 24)])
  message = (r'spliced.mkv has frames of 2 sizes \(16x16, 32x24, HxW\); re-export it at one '
             r'size, e.g. ffmpeg -i IN -vf scale=W:H OUT.mp4\.$')
  with pytest.raises(ValueError, match=message):
    media.read_video(path)
  with pytest.raises(ValueError, match=message):  # a folder dataset's reader too
    folder_source.read_pyav_clip(path, num_frames=3, fps=None, seed=0, index=0)


@pytest.mark.parametrize('name, content, message', [
    ('captions.csv', 'path,caption\na.mp4,un caf\xe9\n'.encode('latin-1'),
     r"caption file '.*captions.csv' is not UTF-8 \(byte 0xe9 on line 2, e.g. Latin-1 text\): "
     r'save it as UTF-8, e.g. iconv -f latin1 -t utf-8 captions.csv > utf8_captions.csv\.$'),
    ('captions.jsonl', '{"path": "a.mp4", "caption": "x"}\n'.encode('utf-16'),
     r"caption file '.*captions.jsonl' is UTF-16 or UTF-32 text, not UTF-8: save it as UTF-8"),
    ('captions.jsonl', b'\n\n', r'captions.jsonl lists no files; add a row per video or image\.$'),
    ('captions.jsonl', b'{"path": "a.mp4", caption: 1}\n',
     r'captions.jsonl line 1 is not JSON \(.*\); write one object per line'),
    ('captions.csv', b'path,caption\na.mp4\n', r'captions.csv rows 1 lack a path or a caption'),
    ('captions.txt', b'a.mp4 a caption\n', r'must end in .jsonl or .csv; rename it\.$'),
])
def test_a_bad_caption_table_names_the_fix(tmp_path, name, content, message):
  (tmp_path / name).write_bytes(content)
  with pytest.raises(ValueError, match=message):
    folder_source.read_captions(tmp_path / name)


def test_a_missing_caption_table_says_where_it_was_looked_for(tmp_path):
  with pytest.raises(FileNotFoundError, match=r'^No caption file at .*captions.jsonl; write one '
                                              'beside the media'):
    folder_source.read_captions(tmp_path / 'captions.jsonl')


def test_caption_tables_in_utf8_with_a_byte_order_mark_read(tmp_path):
  (tmp_path / 'captions.csv').write_bytes('path,caption\na.mp4,un café\n'.encode('utf-8-sig'))
  assert folder_source.read_captions(tmp_path / 'captions.csv') == (['a.mp4'], ['un café'])


# Prompts.

@pytest.mark.parametrize('content, message', [
    ('a red circle\nun caf\xe9 bleu\n'.encode('latin-1'),
     r"^prompt file '.*prompts.txt' is not UTF-8 \(byte 0xe9 on line 2, e.g. Latin-1 text\): "
     r'save it as UTF-8, e.g. iconv -f latin1 -t utf-8 prompts.txt > utf8_prompts.txt\.$'),
    ('a red circle\n'.encode('utf-16'),
     r"^prompt file '.*prompts.txt' is UTF-16 or UTF-32 text, not UTF-8: save it as UTF-8, e.g. "
     r'iconv -f utf-16 -t utf-8 prompts.txt > utf8_prompts.txt\.$'),
    ('a red circle\n'.encode('utf-16-le'), r'is UTF-16 or UTF-32 text'),  # no byte-order mark
    (b'', r"^prompt file '.*prompts.txt' holds no prompts: write one prompt per line\.$"),
    (b' \n\n\t\n', r'holds no prompts'),
])
def test_a_bad_prompt_file_names_the_fix(tmp_path, content, message):
  (tmp_path / 'prompts.txt').write_bytes(content)
  with pytest.raises(ValueError, match=message):
    prompting.read_prompts(tmp_path / 'prompts.txt')


def test_a_prompt_file_reads_one_prompt_per_line(tmp_path):
  path = tmp_path / 'prompts.txt'
  path.write_bytes('\ufeffa red circle\r\n\r\n  un café bleu  \n'.encode('utf-8'))
  assert prompting.read_prompts(path) == ['a red circle', 'un café bleu']
  with pytest.raises(FileNotFoundError, match=r"^no prompt file at '.*missing.txt': check the "
                                              r'path\.$'):
    prompting.read_prompts(tmp_path / 'missing.txt')


def test_no_prompts_names_both_flags(tmp_path):
  with pytest.raises(ValueError, match=r'^no prompts given: pass --prompt "\.\.\." \(repeat for '
                                       r'several\) or --prompts_file with one prompt per line\.$'):
    prompting.gather_prompts([], None)
  (tmp_path / 'prompts.txt').write_text('a blue square\n')
  assert prompting.gather_prompts(['a red circle'], tmp_path / 'prompts.txt') == [
      'a red circle', 'a blue square']


def test_generate_checks_prompts_seeds_and_strength_before_sampling():
  gen = generate.Generator(run=None, params=None, step=0)  # never reached: the checks come first
  with pytest.raises(ValueError, match=r'^no prompts given: pass at least one prompt'):
    gen.generate([])
  with pytest.raises(ValueError, match=r'^1 seeds for 2 prompts: give one seed each\.$'):
    gen.generate(['a', 'b'], seeds=[0])
  with pytest.raises(ValueError, match=r'^strength 1.5 is outside \[0, 1\]: 0 returns the input, '
                                       r'1 ignores it; use e.g. 0.6\.$'):
    gen.generate(['a'], settings=generate.SampleSettings(strength=1.5))
