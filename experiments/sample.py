"""Samples videos from a trained run: text-to-video, or a prompting task with images and videos.

  python experiments/sample.py --workdir outputs/demo/run \
      --prompt "A red circle drifts slowly to the right." --prompt "A blue square moves up."
  python experiments/sample.py --workdir outputs/run --prompt "..." --seed 3 --steps 50 --cfg 5
  python experiments/sample.py --workdir outputs/run --prompts_file prompts.txt  # one per line
  python experiments/sample.py --workdir RUN --task image --image still.png --prompt "..."
  python experiments/sample.py --workdir RUN --task extend --video in.mp4 --frames 16 \
      --direction backward --prompt "..."
  python experiments/sample.py --workdir RUN --task connect --video a.mp4 --video_b b.gif ...
  python experiments/sample.py --workdir RUN --task keyframes --keyframe 0:a.png --keyframe -1:b.png
  python experiments/sample.py --workdir RUN --task edit --video in.mp4 --strength 0.6 ...
  python experiments/sample.py --workdir RUN --task loop --prompt "..."   # or with --video
  python experiments/sample.py --workdir RUN --prompt "A red circle moves up." \
      --negative_prompt "A blue square."   # guidance steers away from it (default: '')
  python experiments/sample.py --workdir LORA_RUN --prompt "..."  # adapters merged onto its base
  python experiments/sample.py --workdir BASE --lora LORA_RUN --prompt "..."  # onto BASE

Tasks (videogen/inference/prompting.py): text, image (animate a still), extend (forward or backward, any
length, window by window), loop (a clip that plays seamlessly on repeat), connect (a transition
from the end of --video to the start of --video_b), keyframes (frames at given indices), edit
(SDEdit at --strength). Each prompt runs the task with seed + i. Uses the EMA weights of the
newest checkpoint (or --step) on one device. Sizes default to the training clip's; any size the
patch size divides works. Outputs: one mp4 (png for 1 frame) + JSON sidecar per prompt, and a
captioned grid for several prompts.
"""
from absl import app
from absl import flags
from absl import logging

import cluster_flags
from videogen.core import media
from videogen.diffusion import samplers
from videogen.inference import generate
from videogen.inference import prompting
from videogen.parallel import distributed
from videogen.runtime import huge_pages
from videogen.runtime import lora
from videogen.runtime import weights

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run folder written by experiments/train.py '
                               '(or a folder written by experiments/export.py).', required=True)
_PROMPTS = flags.DEFINE_multi_string('prompt', [], 'Text prompt (repeat for several).')
_PROMPTS_FILE = flags.DEFINE_string('prompts_file', None, 'UTF-8 text file of prompts, one per '
                                    'line (after any --prompt ones).')
_TASK = flags.DEFINE_enum('task', 'text', prompting.TASKS,
                          'What to make; see the module docstring.')
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
_STEPS = flags.DEFINE_integer('steps', None, "Sampler steps (default: the run's config.sample, "
                               'e.g. 25 for the world, 50 for a Wan export).')
_METHOD = flags.DEFINE_enum('method', None, list(samplers.METHODS),
                            'euler: 1 call/step; heun: 2 calls/step, more accurate; ab2: '
                            '2nd-order multistep at 1 call/step; unipc, fm_euler: diffusers\' '
                            'UniPC (Wan\'s default) and FlowMatchEuler schedulers, 1 call/step '
                            "(default: the run's config.sample).")
_CFG = flags.DEFINE_float('cfg', None, "Text guidance scale (1 = no guidance; default: the run's "
                          'config.sample).')
_CFG_MIN_T = flags.DEFINE_float('cfg_min_t', None, 'Text guidance only at times t >= this, the '
                                'steps near noise where the motion is decided (0: at every '
                                "time; default: the run's config.sample).")
_SHIFT = flags.DEFINE_float('shift', None, 'Time-grid shift of the sampler (more steps near '
                            'noise above 1; default: the run\'s training shift).')
_NEGATIVE = flags.DEFINE_string('negative_prompt', '', 'Text the text guidance steers away '
                                'from, in place of the empty prompt (no effect at --cfg 1).')
_FRAME_CFG = flags.DEFINE_float('frame_cfg', 1.0, 'Guidance scale on the given frames (1 = '
                                'none; more follows them harder, at one more model call).')
_FRAMES = flags.DEFINE_integer('num_frames', None, 'Frames per window (default: the training '
                               'clip\'s).')
_HEIGHT = flags.DEFINE_integer('height', None, 'Height in pixels (default: training size).')
_WIDTH = flags.DEFINE_integer('width', None, 'Width in pixels (default: training size).')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: newest).')
_RAW = flags.DEFINE_bool('raw_weights', False, 'Use the raw weights instead of the EMA ones.')
_LORA = flags.DEFINE_string('lora', None, 'A LoRA run (trained with --config.lora.rank above 0) '
                            'whose adapters to merge onto the --workdir weights instead of onto '
                            'its own base; --step and --raw_weights then pick its adapters, and '
                            'the outputs go to LORA/samples/<step> by default.')


def checked_flags() -> tuple[list[str], generate.SampleSettings, prompting.TaskInputs]:
  """(prompts, settings, task inputs) from the flags; a bad one is a usage error, raised before
  the model loads."""
  try:
    prompts = prompting.gather_prompts(_PROMPTS.value, _PROMPTS_FILE.value)
    settings = generate.settings_for(weights.load_config(_WORKDIR.value), steps=_STEPS.value,
                                     method=_METHOD.value, cfg_scale=_CFG.value,
                                     cfg_min_t=_CFG_MIN_T.value,
                                     frame_cfg_scale=_FRAME_CFG.value, num_frames=_FRAMES.value,
                                     height=_HEIGHT.value, width=_WIDTH.value,
                                     negative_prompt=_NEGATIVE.value, shift=_SHIFT.value)
    inputs = prompting.TaskInputs(
        image=_IMAGE.value, video=_VIDEO.value, video_b=_VIDEO_B.value,
        keyframes=tuple(_KEYFRAMES.value), frames=_NEW_FRAMES.value, direction=_DIRECTION.value,
        context=_CONTEXT.value, strength=_STRENGTH.value, strict=_STRICT.value)
    prompting.check_inputs(_TASK.value, inputs)
    if _LORA.value:
      lora.check_lora_run(weights.load_config(_LORA.value), _LORA.value)
  except (ValueError, FileNotFoundError) as error:  # a missing or malformed flag
    raise app.UsageError(str(error)) from error
  return prompts, settings, inputs


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  cluster_flags.initialize()  # before anything touches a device
  prompts, settings, inputs = checked_flags()
  if _OUT.value and distributed.is_main_process():
    media.check_writable_folder(_OUT.value)
  gen = generate.Generator.from_workdir(_WORKDIR.value, step=_STEP.value,
                                        use_ema=not _RAW.value, lora=_LORA.value)
  out = _OUT.value or f'{_LORA.value or _WORKDIR.value}/samples/{gen.step}'
  paths = prompting.sample_and_write(gen, _TASK.value, prompts, _SEED.value, settings, out,
                                     inputs)
  if distributed.is_main_process():
    print('\n'.join(str(p) for p in paths))


if __name__ == '__main__':
  huge_pages.reexec_with_huge_pages()
  app.run(main)
