"""Times the PyTorch peer of our DiT, diffusers' WanTransformer3DModel, at given shapes (needs
torch and diffusers, not videogen: run it with the python of the reference venv that
experiments/wan_parity.py uses, or let experiments/benchmark.py --peer_python=REFVENV/bin/python
run it beside ours in one run).

  REFVENV/bin/python experiments/peer_benchmark.py \
      --cases 128:4:4:512:7:3:8x32x32:2x8x8:32 --text 32:384 --out peer.json

A case is width:depth:heads:mlp:in_channels:out_channels:TxHxW:ptxphxpw:batch, the shape of one
of our DiTs (benchmark.py passes them); a VAE case (--vae_cases base:mults:res:latent:TxHxW)
is diffusers' AutoencoderKLWan at those widths, timed encoding (posterior mean) and decoding one
random clip, without gradients. For each: the forward pass (no gradients), the train step
(forward, mean squared error against a random target, backward, AdamW) and, with
--sampler_steps, one video sampled with text guidance in that many Euler steps, eager, on the CPU
(`--threads` threads) or a CUDA GPU (`--device cuda`), in float32 or in bfloat16 autocast over
float32 weights (`--dtype bfloat16`, as our model.dtype=bfloat16 computes); the median of
`--repeats` after one warm-up. Writes JSON rows (and the torch version, where it ran and torch's
dense matmul rate there, the peer's ceiling as benchmark.py's is ours) to --out; prints them.
"""
import argparse
import json
import pathlib
import platform
import sys

import torch
from diffusers import AutoencoderKLWan
from diffusers import WanTransformer3DModel

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from videogen.core import timing  # noqa: E402  (numpy only: ours and the peer timed alike)


def parse_case(case: str) -> dict:
  """'width:depth:heads:mlp:in:out:TxHxW:ptxphxpw:batch' -> its fields."""
  width, depth, heads, mlp, channels_in, channels_out, clip, patch, batch = case.split(':')
  ints = lambda text: tuple(int(v) for v in text.split('x'))
  return dict(width=int(width), depth=int(depth), heads=int(heads), mlp=int(mlp),
              in_channels=int(channels_in), out_channels=int(channels_out), clip=ints(clip),
              patch=ints(patch), batch=int(batch))


def time_case(case: dict, text_length: int, text_dim: int, repeats: int, device: str,
              dtype: str, sampler_steps: int = 0) -> dict:
  torch.manual_seed(0)
  model = WanTransformer3DModel(
      patch_size=case['patch'], num_attention_heads=case['heads'],
      attention_head_dim=case['width'] // case['heads'], in_channels=case['in_channels'],
      out_channels=case['out_channels'], text_dim=text_dim, ffn_dim=case['mlp'],
      num_layers=case['depth']).to(device)
  frames, height, width = case['clip']
  x = torch.randn(case['batch'], case['in_channels'], frames, height, width, device=device)
  t = torch.rand(case['batch'], device=device) * 1000
  text = torch.randn(case['batch'], text_length, text_dim, device=device)
  target = torch.randn(case['batch'], case['out_channels'], frames, height, width, device=device)
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
  autocast = lambda: torch.autocast(device, torch.bfloat16, enabled=dtype == 'bfloat16')
  done = torch.cuda.synchronize if device == 'cuda' else lambda: None

  def forward():
    with torch.no_grad(), autocast():
      model(x, t, text, return_dict=False)
    done()

  def train_step():
    optimizer.zero_grad(set_to_none=True)
    with autocast():
      out = model(x, t, text, return_dict=False)[0]
    loss = torch.nn.functional.mse_loss(out.float(), target)
    loss.backward()
    optimizer.step()
    done()

  def sample():
    """One video in sampler_steps Euler steps with text guidance (scale 4), as ours samples:
    the caption's and the empty prompt's branches in one batch of 2."""
    z = torch.randn(1, case['in_channels'], frames, height, width, device=device)
    texts = torch.randn(2, text_length, text_dim, device=device)
    with torch.no_grad(), autocast():
      for i in range(sampler_steps):
        t_2 = torch.full((2,), 1000.0 * (1 - i / sampler_steps), device=device)
        v_text, v_null = model(z.expand(2, -1, -1, -1, -1), t_2, texts, return_dict=False)[0]
        v = v_null + 4.0 * (v_text - v_null)
        z[:, :case['out_channels']] -= v.float() / sampler_steps
    done()

  params = sum(p.numel() for p in model.parameters())
  row = {'clip': 'x'.join(map(str, case['clip'])), 'patch': 'x'.join(map(str, case['patch'])),
         'width': case['width'], 'depth': case['depth'], 'batch': case['batch'],
         'params_M': params / 1e6, 'forward_s': timing.median_seconds(forward, repeats),
         'step_s': timing.median_seconds(train_step, repeats)}
  if sampler_steps:
    row.update(sampler_steps=sampler_steps, sample_s=timing.median_seconds(sample, repeats))
  return row


def matmul_rate(device: str, dtype: str, repeats: int, size: int = 2048) -> float:
  """torch's dense size x size matmul rate in GFLOP/s in `dtype` on `device`."""
  a = torch.randn(size, size, device=device, dtype=getattr(torch, dtype))
  done = torch.cuda.synchronize if device == 'cuda' else lambda: None

  def matmul():
    torch.mm(a, a)
    done()

  return 2 * size ** 3 / timing.median_seconds(matmul, repeats) / 1e9


def time_vae_case(case: str, repeats: int, device: str) -> dict:
  """'base:mults:res:latent:TxHxW' -> diffusers' AutoencoderKLWan at those widths (Wan's layout:
  time halved on the last two downsamplings), random weights: encode (posterior mean) and
  decode seconds of one random clip, as ours (throughput.vae_speed)."""
  base, mults, res, latent, clip = case.split(':')
  mults = [int(m) for m in mults.split('-')]
  torch.manual_seed(0)
  model = AutoencoderKLWan(base_dim=int(base), z_dim=int(latent), dim_mult=mults,
                           num_res_blocks=int(res),
                           temperal_downsample=[i >= len(mults) - 3 for i in range(len(mults) - 1)]
                           ).to(device).eval()
  frames, height, width = (int(v) for v in clip.split('x'))
  x = torch.rand(1, 3, frames, height, width, device=device) * 2 - 1
  done = torch.cuda.synchronize if device == 'cuda' else lambda: None
  with torch.no_grad():
    z = model.encode(x).latent_dist.mean

  def encode():
    with torch.no_grad():
      model.encode(x).latent_dist.mean
    done()

  def decode():
    with torch.no_grad():
      model.decode(z).sample
    done()

  return {'vae_case': case, 'clip': clip,
          'params_M': sum(p.numel() for p in model.parameters()) / 1e6,
          'encode_s': timing.median_seconds(encode, repeats),
          'decode_s': timing.median_seconds(decode, repeats)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--cases', default='',
                      help='comma-separated width:depth:heads:mlp:in:out:TxHxW:ptxphxpw:batch')
  parser.add_argument('--vae_cases', default='',
                      help="comma-separated base:mults:res:latent:TxHxW (AutoencoderKLWan's "
                      'widths and clip, e.g. 32:1-2-4-4:2:16:17x128x128)')
  parser.add_argument('--text', default='32:384', help='text tokens:width (ours: MiniLM, 384)')
  parser.add_argument('--threads', type=int, default=2, help='torch intra-op threads')
  parser.add_argument('--repeats', type=int, default=5, help='timed repeats after a warm-up')
  parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'], help='where to run')
  parser.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16'],
                      help='compute dtype (bfloat16: autocast over float32 weights)')
  parser.add_argument('--sampler_steps', type=int, default=0,
                      help='also time one video in this many Euler steps with text guidance')
  parser.add_argument('--out', required=True, help='JSON file to write')
  args = parser.parse_args()
  torch.set_num_threads(args.threads)
  text_length, text_dim = (int(v) for v in args.text.split(':'))
  rows = [time_case(parse_case(case), text_length, text_dim, args.repeats, args.device,
                    args.dtype, args.sampler_steps)
          for case in filter(None, args.cases.split(','))]
  vae_rows = [time_vae_case(case, args.repeats, args.device)
              for case in filter(None, args.vae_cases.split(','))]
  where = (f'{torch.cuda.get_device_name()}, {args.dtype}' if args.device == 'cuda'
           else f'{args.threads} threads, {args.dtype}')
  record = {'peer': 'diffusers.WanTransformer3DModel', 'torch': torch.__version__,
            'where': where, 'python': platform.python_version(),
            'matmul_gflops_per_s': matmul_rate(args.device, args.dtype, args.repeats),
            'rows': rows,
            'vae_rows': vae_rows}
  with open(args.out, 'w') as f:
    json.dump(record, f, indent=1)
  print(json.dumps(record, indent=1))


if __name__ == '__main__':
  main()
