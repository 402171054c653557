"""The benchmark runner's cases (variant, clip, patch, batch and an optional block layout and
remat policy; VAE widths and clip) and its training-loop timing."""
import pytest

from videogen.bench import throughput


def test_a_case_names_its_shape_and_optionally_its_block_layout_and_remat():
  assert throughput.parse_case('T/2:8x32x32:2x8x8:32') == {
      'variant': 'T/2', 'shape_thw': (8, 32, 32), 'patch': (2, 8, 8), 'batch_size': 32,
      'scan_layers': None, 'remat': None}
  assert throughput.parse_case('S/2:8x64x64:2x4x4:4:unrolled')['scan_layers'] is False
  assert throughput.parse_case('T/2:8x32x32:2x8x8:32:scanned')['scan_layers'] is True
  case = throughput.parse_case('T/2:8x32x32:2x8x8:32:unrolled:remat=dots')
  assert (case['scan_layers'], case['remat']) == (False, 'dots')
  assert throughput.parse_case('T/2:8x32x32:2x8x8:32:remat=full')['remat'] == 'full'


@pytest.mark.parametrize('case', ['T/2:8x32x32:2x8x8', 'T/2:8x32x32:2x8x8:32:looped',
                                  'T/2:8x32:2x8x8:32:scanned:x', 'T/2:8xAx32:2x8x8:32',
                                  'T/2:8x32x32:2x8x8:32:scanned:unrolled',
                                  'T/2:8x32x32:2x8x8:32:remat=some'])
def test_a_malformed_case_is_one_sentence(case):
  with pytest.raises(ValueError, match=r'is not variant:TxHxW:ptxphxpw:batch\[:scanned\|'
                                       r'unrolled\]\[:remat=none\|dots\|full\], e\.g\. '
                                       r'T/2:8x32x32:2x8x8:32\.$'):
    throughput.parse_case(case)


def test_a_case_is_timed_at_the_text_shape_asked_without_a_text_encoder():
  from configs import world  # pylint: disable=g-import-not-at-top
  config = world.get_config('runlocal=True')
  row = throughput.train_step_rate(config, variant='T/2', shape_thw=(4, 16, 16), patch=(2, 8, 8),
                                   batch_size=8, repeats=1, text_shape=(7, 24))
  assert row['peer_text'] == '7:24' and row['tokens'] == 8
  assert row['peer_case'].split(':')[-3:] == ['4x16x16', '2x8x8', '8']
  assert row['step_s'] > 0 and row['forward_s'] > 0
  states, mask = throughput.SyntheticText(7, 24).encode(['a', 'b'])
  assert states.shape == (2, 7, 24) and mask.all() and (states[0] == states[1]).all()


def test_a_vae_case_names_the_wan_layout_at_its_widths_and_is_timed():
  assert throughput.parse_vae_case('32:1-2-4-4:2:16:17x128x128') == {
      'fields': {'base_channels': 32, 'channel_multipliers': (1, 2, 4, 4), 'num_res_blocks': 2,
                 'latent_channels': 16, 'spatial_downsample': 8}, 'clip': (17, 128, 128)}
  with pytest.raises(ValueError, match=r'is not base:mults:res:latent:TxHxW, e\.g\. '):
    throughput.parse_vae_case('32:1-2-x:2:16:17x128x128')
  row = throughput.vae_speed('4:1-2-2:1:4:5x16x16', repeats=1)
  assert row['clip'] == '5x16x16' and row['encode_s'] > 0 and row['decode_s'] > 0


def test_the_loop_is_timed_with_model_batches_in_turn_and_ahead():
  from configs import world  # pylint: disable=g-import-not-at-top
  rows = throughput.loop_rates(world.get_config('runlocal=True'), steps=2, rounds=1)
  assert [row['loop'] for row in rows] == ['in turn', 'ahead', 'in turn, echo 2',
                                           'ahead, echo 2', 'in turn, echo 2, 2 clips a caption']
  assert all(row['steps_per_s'] > 0 for row in rows) and rows[0]['vs_in_turn'] == 1.0
  assert rows[0]['layout'] == 'packed'  # the config's own data
  assert [row['configs_own'] for row in rows].count(True) == 1


def test_guided_sampling_is_timed_beside_the_peers_where_both_ran():
  from configs import world  # pylint: disable=g-import-not-at-top
  row = throughput.sampler_overhead(world.get_config('runlocal=True'), variant='T/2',
                                    shape_thw=(2, 16, 16), patch=(1, 8, 8), steps=2, repeats=1,
                                    guided_steps=3)
  assert row['guided_steps'] == 3 and row['guided_sample_s'] > 0
  train = {'variant': 'T/2', 'clip': '2x16x16', 'patch': '1x8x8', 'batch': 8,
           'blocks': 'scanned', 'remat': 'none', 'params_M': 1.0, 'forward_s': 1.0, 'step_s': 2.0}
  peer = {'peer': 'torch', 'params_M': 1.0, 'forward_s': 2.0, 'step_s': 2.0,
          'sample_s': 2 * row['guided_sample_s']}
  (both,) = throughput.peer_rows([train], [peer], [row])
  assert both['sample_ratio'] == 2.0 and both['step_ratio'] == 1.0
  (alone,) = throughput.peer_rows([train], [{**peer, 'sample_s': None}], [row])
  assert 'sample_ratio' not in alone  # a peer run without --sampler_steps


def test_the_peer_rows_say_what_rate_the_speed_target_needs_against_the_matmul_ceiling():
  # 200 GFLOP a step; 1.5x the peer's 3 s step needs 100 GFLOP/s, the forward (a third of the
  # FLOPs) 1.5x the peer's 1 s needs 100 too: 125% of the faster matmul rate (the peer's 80).
  train = {'variant': 'T/2', 'clip': '2x16x16', 'patch': '1x8x8', 'batch': 8,
           'blocks': 'scanned', 'remat': 'none', 'params_M': 1.0, 'forward_s': 1.0,
           'step_s': 2.0, 'gflops_per_s': 100.0}
  peer = {'peer': 'torch', 'params_M': 1.0, 'forward_s': 1.0, 'step_s': 3.0,
          'matmul_gflops_per_s': 80.0}
  (row,) = throughput.peer_rows([train], [peer], matmul_gflops_per_s=50.0)
  assert row['matmul_ceiling_gflops_per_s'] == row['peer_matmul_gflops_per_s'] == 80.0
  assert abs(row['step_target_pct_of_matmul'] - 125.0) < 1e-9
  assert abs(row['forward_target_pct_of_matmul'] - 125.0) < 1e-9
  (unknown,) = throughput.peer_rows([train], [{**peer, 'matmul_gflops_per_s': None}])
  assert 'step_target_pct_of_matmul' not in unknown  # no rate measured, no claim
