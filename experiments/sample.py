"""Samples videos from a trained run: text-to-video, or a prompting task with images and videos.

  python experiments/sample.py --workdir outputs/demo/run \
      --prompt "A red circle drifts slowly to the right." --prompt "A blue square moves up."
  python experiments/sample.py --workdir outputs/run --prompt "..." --seed 3 --steps 50 --cfg 5
  python experiments/sample.py --workdir RUN --task image --image still.png --prompt "..."
  python experiments/sample.py --workdir RUN --task extend --video in.mp4 --frames 16 \
      --direction backward --prompt "..."
  python experiments/sample.py --workdir RUN --task connect --video a.mp4 --video_b b.gif ...
  python experiments/sample.py --workdir RUN --task keyframes --keyframe 0:a.png --keyframe -1:b.png
  python experiments/sample.py --workdir RUN --task edit --video in.mp4 --strength 0.6 ...
  python experiments/sample.py --workdir RUN --task loop --prompt "..."   # or with --video

Tasks (videogen/inference/prompting.py): text, image (animate a still), extend (forward or backward, any
length, window by window), loop (a clip that plays seamlessly on repeat), connect (a transition
from the end of --video to the start of --video_b), keyframes (frames at given indices), edit
(SDEdit at --strength). Each prompt runs the task with seed + i. Uses the EMA weights of the
newest checkpoint (or --step) on one device. Sizes default to the training clip's; any size the
patch size divides works. Outputs: one mp4 (png for 1 frame) + JSON sidecar per prompt, and a
captioned grid for several prompts.
"""
import dataclasses

from absl import app
from absl import flags
from absl import logging

from videogen.core import grids
from videogen.core import media
from videogen.inference import generate
from videogen.inference import prompting
from videogen.parallel import distributed

TASKS = ('text', 'image', 'extend', 'loop', 'connect', 'keyframes', 'edit')

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run folder written by experiments/train.py '
                               '(or a folder written by experiments/export.py).', required=True)
_PROMPTS = flags.DEFINE_multi_string('prompt', None, 'Text prompt (repeat for several).',
                                     required=True)
_TASK = flags.DEFINE_enum('task', 'text', TASKS, 'What to make; see the module docstring.')
_IMAGE = flags.DEFINE_string('image', None, 'Still image to animate (--task image).')
_VIDEO = flags.DEFINE_string('video', None, 'Input video (extend, loop, connect: the first '
                             'clip, edit).')
_VIDEO_B = flags.DEFINE_string('video_b', None, 'The clip to lead into (--task connect).')
_KEYFRAMES = flags.DEFINE_multi_string('keyframe', [], 'INDEX:PATH of an image the video must '
                                       'show at frame INDEX (negative counts from the end).')
_NEW_FRAMES = flags.DEFINE_integer('frames', None, 'New frames to make: extend (required), '
                                   'connect and loop (default: what fills one window).')
_DIRECTION = flags.DEFINE_enum('direction', 'forward', ['forward', 'backward'],
                               'Which end --task extend grows.')
_CONTEXT = flags.DEFINE_integer('context', None, 'Given frames per window: extend (default '
                                'half the window), connect and loop (default 1 at each end).')
_STRENGTH = flags.DEFINE_float('strength', 0.6, 'SDEdit noise level for --task edit: 0 keeps '
                               'the input, 1 ignores it.')
_STRICT = flags.DEFINE_bool('strict', False, 'Refuse inputs of another aspect ratio instead of '
                            'cropping them with a warning.')
_OUT = flags.DEFINE_string('out', None, 'Output folder (default WORKDIR/samples/<step>).')
_SEED = flags.DEFINE_integer('seed', 0, 'Noise seed of the first prompt; the i-th uses seed+i.')
_STEPS = flags.DEFINE_integer('steps', 25, 'Sampler steps.')
_METHOD = flags.DEFINE_enum('method', 'heun', ['euler', 'heun', 'ab2'],
                            'euler: 1 call/step; heun: 2 calls/step, more accurate; ab2: '
                            '2nd-order multistep at 1 call/step.')
_CFG = flags.DEFINE_float('cfg', 4.0, 'Text guidance scale (1 = no guidance).')
_FRAME_CFG = flags.DEFINE_float('frame_cfg', 1.0, 'Guidance scale on the given frames (1 = '
                                'none; more follows them harder, at one more model call).')
_FRAMES = flags.DEFINE_integer('num_frames', None, 'Frames per window (default: the training '
                               'clip\'s).')
_HEIGHT = flags.DEFINE_integer('height', None, 'Height in pixels (default: training size).')
_WIDTH = flags.DEFINE_integer('width', None, 'Width in pixels (default: training size).')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: newest).')
_RAW = flags.DEFINE_bool('raw_weights', False, 'Use the raw weights instead of the EMA ones.')


def _need(flag, task: str):
  if not flag.value:
    raise app.UsageError(f'--task {task} needs --{flag.name}.')
  return flag.value


def _keyframes() -> dict:
  frames = {}
  for item in _KEYFRAMES.value:
    index, sep, path = item.partition(':')
    if not sep or not index.lstrip('-').isdigit():
      raise app.UsageError(f'--keyframe {item!r} is not INDEX:PATH, e.g. --keyframe 0:a.png.')
    frames[int(index)] = path
  if not frames:
    raise app.UsageError('--task keyframes needs at least one --keyframe INDEX:PATH.')
  return frames


def run_task(gen: generate.Generator, prompt: str, seed: int,
             settings: generate.SampleSettings):
  """The uint8 video [T, H, W, 3] that --task makes for one prompt."""
  task, common = _TASK.value, dict(seed=seed, settings=settings, strict=_STRICT.value)
  context = {} if _CONTEXT.value is None else {'context': _CONTEXT.value}
  if task == 'text':
    return gen.generate([prompt], seeds=[seed], settings=settings)[0]
  if task == 'image':
    return prompting.image_to_video(gen, _need(_IMAGE, task), prompt, **common)
  if task == 'extend':
    return prompting.extend(gen, _need(_VIDEO, task), prompt, frames=_need(_NEW_FRAMES, task),
                            direction=_DIRECTION.value, **context, **common)
  if task == 'loop':
    return prompting.loop(gen, _VIDEO.value or prompt, prompt, frames=_NEW_FRAMES.value,
                          **context, **common)
  if task == 'connect':
    return prompting.connect(gen, _need(_VIDEO, task), _need(_VIDEO_B, task), prompt,
                             frames=_NEW_FRAMES.value, **context, **common)
  if task == 'keyframes':
    return prompting.keyframes(gen, _keyframes(), prompt, **common)
  return prompting.edit(gen, _need(_VIDEO, task), prompt, strength=_STRENGTH.value, **common)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  distributed.initialize_from_flags()  # before anything touches a device
  gen = generate.Generator.from_workdir(_WORKDIR.value, step=_STEP.value,
                                        use_ema=not _RAW.value)
  settings = generate.SampleSettings(steps=_STEPS.value, method=_METHOD.value,
                                     cfg_scale=_CFG.value, frame_cfg_scale=_FRAME_CFG.value,
                                     num_frames=_FRAMES.value, height=_HEIGHT.value,
                                     width=_WIDTH.value)
  prompts = _PROMPTS.value
  seeds = [_SEED.value + i for i in range(len(prompts))]
  videos = [run_task(gen, p, s, settings) for p, s in zip(prompts, seeds)]
  out = _OUT.value or f'{_WORKDIR.value}/samples/{gen.step}'
  if _TASK.value == 'edit':
    settings = dataclasses.replace(settings, strength=_STRENGTH.value)
  paths = []
  for i, (video, prompt, seed) in enumerate(zip(videos, prompts, seeds)):
    paths += gen.write(video[None], [prompt], out, seeds=[seed], settings=settings,
                       task=_TASK.value, start=i)
  if not distributed.is_main_process():
    return  # every process sampled the same videos on its own device; process 0 writes them
  if len(prompts) > 1 and len({v.shape for v in videos}) == 1:
    paths += grids.write_grid(f'{out}/grid', videos, prompts, fps=gen.run.config.world.fps)
  print('\n'.join(str(p) for p in paths))


if __name__ == '__main__':
  app.run(main)
