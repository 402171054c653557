"""Writes the Wan 2.1 golden files from the PyTorch reference (needs torch and diffusers, not
videogen).

Run from the repository root, with the python of a separate venv that has torch==2.13.0,
diffusers==0.42.1, transformers==5.24.0, accelerate==1.16.0 and safetensors (REFVENV: wherever
that venv lives):
  REFVENV/bin/python experiments/wan_parity.py --out tests/data/wan

Every model is a tiny random one built with a fixed seed, saved in the layout a user downloads
(Diffusers' `save_pretrained`: `transformer/`, `vae/`), with fixed inputs and the reference's
outputs beside it, so the tests (tests/test_wan_*.py) need no torch. Writes, under --out:
  transformer/            a tiny WanTransformer3DModel (config.json + safetensors).
  original/               the same weights in the original Wan release's layout: its key names
                          (checked here to convert back to the Diffusers layout by diffusers' own
                          single-file converter) and its config.json fields.
  dit_golden.npz          its inputs (latents, timesteps, text states) and output.
  vae/                    a tiny AutoencoderKLWan (config.json + safetensors).
  vae_golden.npz          its input video, posterior mean and logvar, a latent and its decoding.
  vae_wan_shapes.json     the tensor names and shapes of the full-size Wan 2.1 VAE.
  text_encoder/, tokenizer/
                          the tiny umT5 of tests/data and its word-level tokenizer, saved as a
                          Wan release saves its own.
  pipeline_golden.npz     WanPipeline end to end (umT5 -> DiT with guidance, UniPC -> VAE
                          decode): its settings, starting latents and final frames in [0, 1].
  scheduler_golden.npz    UniPC and FlowMatchEuler on a stand-in linear model: per case its
                          sigmas, timesteps and every step's sample.
"""
import argparse
import json
import pathlib

import numpy as np
import safetensors.torch
import torch
import transformers
from diffusers import AutoencoderKLWan
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers import UniPCMultistepScheduler
from diffusers import WanPipeline
from diffusers import WanTransformer3DModel
from diffusers.loaders import single_file_utils

SEED = 0
# The tiny DiT: 2 heads of 12 (RoPE parts 4, 4, 4), 2 blocks, text width of the tiny umT5 in
# tests/data (32), latent channels of the tiny VAE (4).
TINY_DIT = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                in_channels=4, out_channels=4, text_dim=32, freq_dim=256, ffn_dim=48,
                num_layers=2, cross_attn_norm=True, qk_norm='rms_norm_across_heads', eps=1e-6)
# Diffusers name part -> the original Wan release's, applied in this order (the inverse of
# diffusers.loaders.single_file_utils.convert_wan_transformer_to_diffusers for a T2V model).
DIFFUSERS_TO_ORIGINAL = (
    ('condition_embedder.time_embedder.linear_1.', 'time_embedding.0.'),
    ('condition_embedder.time_embedder.linear_2.', 'time_embedding.2.'),
    ('condition_embedder.text_embedder.linear_1.', 'text_embedding.0.'),
    ('condition_embedder.text_embedder.linear_2.', 'text_embedding.2.'),
    ('condition_embedder.time_proj.', 'time_projection.1.'),
    ('.to_out.0.', '.o.'), ('.to_q.', '.q.'), ('.to_k.', '.k.'), ('.to_v.', '.v.'),
    ('.attn1.', '.self_attn.'), ('.attn2.', '.cross_attn.'), ('.norm2.', '.norm3.'),
    ('.ffn.net.0.proj.', '.ffn.0.'), ('.ffn.net.2.', '.ffn.2.'),
    ('.scale_shift_table', '.modulation'), ('proj_out.', 'head.head.'),
)


def randomize(module: torch.nn.Module, generator: torch.Generator) -> None:
  """Every parameter drawn anew (norm scales around 1), so that no zero or one hides a wrong
  mapping."""
  with torch.no_grad():
    for name, p in module.named_parameters():
      noise = torch.randn(p.shape, generator=generator)
      p.copy_(1 + 0.1 * noise if 'norm' in name else 0.3 * noise)


def to_original(state: dict) -> dict:
  """Diffusers DiT state -> the original release's names (the modulation tables keep their
  [1, k, E] shape in both)."""
  original = {}
  for name, value in state.items():
    if name == 'scale_shift_table':
      name = 'head.modulation'
    for old, new in DIFFUSERS_TO_ORIGINAL:
      name = name.replace(old, new)
    original[name] = value
  return original


def dit_golden(out: pathlib.Path) -> None:
  generator = torch.Generator().manual_seed(SEED)
  model = WanTransformer3DModel(**TINY_DIT).eval()
  randomize(model, generator)
  model.save_pretrained(out / 'transformer')
  state = {k: v.contiguous() for k, v in model.state_dict().items()}
  original = to_original(state)
  back = single_file_utils.convert_wan_transformer_to_diffusers(dict(original))
  assert set(back) == set(state), sorted(set(back) ^ set(state))
  assert all(torch.equal(back[k], state[k]) for k in state)
  (out / 'original').mkdir(exist_ok=True)
  safetensors.torch.save_file(original, out / 'original' / 'diffusion_pytorch_model.safetensors')
  config = model.config
  (out / 'original' / 'config.json').write_text(json.dumps(dict(  # the original release's fields
      _class_name='WanModel', model_type='t2v', dim=config.num_attention_heads *
      config.attention_head_dim, num_heads=config.num_attention_heads, num_layers=config.num_layers,
      ffn_dim=config.ffn_dim, freq_dim=config.freq_dim, in_dim=config.in_channels,
      out_dim=config.out_channels, text_dim=config.text_dim, eps=config.eps,
      patch_size=list(config.patch_size)), indent=1))

  # 3 frames of 4 x 6 latents (h != w catches a swapped axis), two times, 7 text tokens.
  latents = torch.randn((2, 4, 3, 4, 6), generator=generator)
  timesteps = torch.tensor([873.25, 120.5])
  text = torch.randn((2, 7, 32), generator=generator)
  with torch.no_grad():
    output = model(latents, timesteps, text, return_dict=False)[0]
  np.savez(out / 'dit_golden.npz', latents=latents.numpy(), timesteps=timesteps.numpy(),
           text=text.numpy(), output=output.numpy())


# The tiny VAE: 3 levels of 4, 8, 8 channels, time and space compressed 4x (our 'tiny' preset
# at base_channels=4, which keeps its safetensors at 170 KB), the tiny DiT's 4 latent channels.
TINY_VAE = dict(base_dim=4, z_dim=4, dim_mult=[1, 2, 2], num_res_blocks=1,
                temperal_downsample=[True, True], scale_factor_temporal=4, scale_factor_spatial=4,
                latents_mean=[0.3, -0.7, 1.1, -0.2], latents_std=[1.9, 0.6, 2.4, 1.3])


def vae_golden(out: pathlib.Path) -> None:
  """Encodes 9 frames (frame 0 alone, then two chunks of 4 in diffusers) and decodes 3 latent
  frames (one at a time in diffusers), so both paths cross chunk boundaries and the first-chunk
  time resampling."""
  generator = torch.Generator().manual_seed(SEED)
  model = AutoencoderKLWan(**TINY_VAE).eval()
  randomize(model, generator)
  with torch.no_grad():
    # Decoded pixels stay mostly inside diffusers' clamp to [-1, 1], so that it hides little.
    model.decoder.conv_out.weight.mul_(0.1)
    model.decoder.conv_out.bias.mul_(0.1)
  model.save_pretrained(out / 'vae')
  # 9 frames of 16 x 24 pixels (h != w catches a swapped axis) in [-1, 1]; 3 latent frames.
  video = 2 * torch.rand((1, 3, 9, 16, 24), generator=generator) - 1
  latents = torch.randn((1, 4, 3, 4, 6), generator=generator)
  with torch.no_grad():
    posterior = model.encode(video).latent_dist
    decoded = model.decode(latents).sample
  np.savez(out / 'vae_golden.npz', video=video.numpy(), mean=posterior.mean.numpy(),
           logvar=posterior.logvar.numpy(), latents=latents.numpy(), decoded=decoded.numpy())
  # The released VAE's layout (4 levels, 2 residual blocks, a level that halves space only),
  # which the tiny one does not cover; built on the meta device, no weights.
  with torch.device('meta'):
    shapes = {k: list(v.shape) for k, v in AutoencoderKLWan().state_dict().items()}
  (out / 'vae_wan_shapes.json').write_text(json.dumps(shapes, indent=0) + '\n')


# The end-to-end case: the tiny umT5 of tests/data (experiments/text_parity.py) and its word-level
# tokenizer, the tiny DiT and VAE above, Wan's default scheduler (UniPC, flow shift 3).
TEXT_DATA = pathlib.Path(__file__).parent.parent / 'tests' / 'data'
PIPELINE = dict(prompt='w12 w7 w99 w45 w3', negative_prompt='', height=16, width=32, num_frames=9,
                num_inference_steps=6, guidance_scale=5.0, max_sequence_length=16, flow_shift=3.0)


def pipeline_golden(out: pathlib.Path) -> None:
  """WanPipeline end to end from fixed starting latents; also saves its text encoder and
  tokenizer, so that out/ is a whole (tiny) Diffusers checkpoint."""
  tokenizer = transformers.PreTrainedTokenizerFast(
      tokenizer_file=str(TEXT_DATA / 'text_tiny_tokenizer.json'), pad_token='<pad>',
      eos_token='</s>', unk_token='<unk>')
  text_config = json.loads((TEXT_DATA / 'text_tiny_umt5_config.json').read_text())
  text_encoder = transformers.UMT5EncoderModel(transformers.UMT5Config(**text_config)).eval()
  state = safetensors.torch.load_file(TEXT_DATA / 'text_tiny_umt5.safetensors')
  missing, unexpected = text_encoder.load_state_dict(state, strict=False)
  assert not unexpected and set(missing) <= {'encoder.embed_tokens.weight'}, (missing, unexpected)
  tokenizer.save_pretrained(out / 'tokenizer')
  text_encoder.save_pretrained(out / 'text_encoder')
  scheduler = UniPCMultistepScheduler(prediction_type='flow_prediction', use_flow_sigmas=True,
                                      num_train_timesteps=1000,
                                      flow_shift=PIPELINE['flow_shift'])
  pipe = WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, scheduler=scheduler,
                     transformer=WanTransformer3DModel.from_pretrained(out / 'transformer'),
                     vae=AutoencoderKLWan.from_pretrained(out / 'vae'))
  generator = torch.Generator().manual_seed(SEED + 1)
  latents = torch.randn((1, 4, 3, 4, 8), generator=generator)  # 9 frames of 16 x 32 at 4x4x4
  settings = {k: v for k, v in PIPELINE.items() if k != 'flow_shift'}
  with torch.no_grad():
    frames = pipe(**settings, latents=latents, output_type='np').frames
  np.savez(out / 'pipeline_golden.npz', latents=latents.numpy(), frames=np.asarray(frames),
           settings=json.dumps(PIPELINE))


# Scheduler cases (name: scheduler, shift, steps): UniPC as Wan's pipeline sets it up (its
# default), and FlowMatchEuler, diffusers' other flow scheduler for Wan.
SCHEDULER_CASES = {'unipc_shift3_steps10': ('unipc', 3.0, 10),
                   'unipc_shift5_steps4': ('unipc', 5.0, 4),
                   'unipc_shift1_steps2': ('unipc', 1.0, 2),
                   'unipc_shift3_steps1': ('unipc', 3.0, 1),
                   'fm_euler_shift3_steps10': ('fm_euler', 3.0, 10),
                   'fm_euler_shift5_steps4': ('fm_euler', 5.0, 4)}


def scheduler_golden(out: pathlib.Path) -> None:
  """Each scheduler of SCHEDULER_CASES run as WanPipeline runs it, on a stand-in model
  v = a x + b sin(7 t) + c with t = timestep / 1000 (so that a model time off by a thousandth
  shows): its sigmas, timesteps and every sample from the first to the last."""
  generator = torch.Generator().manual_seed(SEED + 2)
  shape = (1, 4, 2, 3, 5)
  a, b, c, latents = (torch.randn(shape, generator=generator) for _ in range(4))
  a = 0.5 + 0.25 * a  # near 1/2, so that the samples stay of order 1
  arrays = dict(a=a.numpy(), b=b.numpy(), c=c.numpy(), latents=latents.numpy(),
                cases=json.dumps(SCHEDULER_CASES))
  for name, (kind, shift, steps) in SCHEDULER_CASES.items():
    if kind == 'unipc':
      scheduler = UniPCMultistepScheduler(prediction_type='flow_prediction', use_flow_sigmas=True,
                                          num_train_timesteps=1000, flow_shift=shift)
    else:
      scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
    scheduler.set_timesteps(steps)
    scheduler.set_begin_index(0)
    samples = [latents]
    for t in scheduler.timesteps:
      v = a * samples[-1] + b * torch.sin(7 * (t / 1000)) + c
      samples.append(scheduler.step(v, t, samples[-1], return_dict=False)[0])
    arrays.update({f'{name}/sigmas': scheduler.sigmas.numpy(),
                   f'{name}/timesteps': scheduler.timesteps.numpy(),
                   f'{name}/samples': torch.stack(samples).numpy()})
  np.savez(out / 'scheduler_golden.npz', **arrays)


GOLDENS = (dit_golden, vae_golden, pipeline_golden, scheduler_golden)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default='tests/data/wan', help='folder for the golden files')
  args = parser.parse_args()
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  torch.manual_seed(SEED)
  for golden in GOLDENS:
    golden(out)
    print(f'{golden.__name__}: written under {out}')


if __name__ == '__main__':
  main()
