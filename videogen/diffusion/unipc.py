"""UniPC, the sampler Wan 2.1 ships with: diffusers' `UniPCMultistepScheduler` as Wan's pipeline
configures it (prediction_type='flow_prediction', use_flow_sigmas=True, flow_shift=shift,
num_train_timesteps=1000; solver_order=2, solver_type='bh2', predict_x0=True,
lower_order_final=True, final_sigmas_type='zero', no corrector disabled), step for step.

Grid (`schedule`): sigmas shift(linspace(1, 1/1000, steps + 1)[:-1]), the first nudged to
1 - 1e-6 (which keeps diffusers' log(1 - sigma) finite), then 0. Diffusers calls the model at
the integer timestep int(1000 sigma), so the model here sees that / 1000: up to a thousandth
below the state's sigma, as in Wan's own pipeline (and Wan trained on integer timesteps).

Each step, with the model's data estimate m_i = x_i - sigma_i v_i (flow_prediction):
  corrector (UniC, steps after the first): x_i is redone from x_{i-1} with m_i included, order
            1 after the first step and 2 after the others; m_i itself stays the estimate made
            at the uncorrected x_i, as in diffusers.
  predictor (UniP-bh2): exponential-integrator step in lambda = log((1 - sigma) / sigma), order
            1 on the first step (no history yet) and on the last one (lower_order_final, which
            lands on m exactly), else order 2 through m_{i-1}.
One model call per step. The coefficients follow diffusers' formulas, except that sigma_{i+1} /
sigma_i comes from the grid before t_start scales it, so that t_start = 0 (SDEdit at strength
0: every sigma 0) stays finite and returns x.
"""
import jax
import jax.numpy as jnp
import numpy as np

from videogen.diffusion import flow

TRAIN_TIMESTEPS = 1000


def schedule(steps: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
  """(sigmas [steps + 1] from 1 - 1e-6 to 0, model times [steps] = int(1000 sigma) / 1000),
  float32, as UniPCMultistepScheduler.set_timesteps makes them."""
  sigmas = flow.shift_t(np.linspace(1.0, 1.0 / TRAIN_TIMESTEPS, steps + 1)[:-1], shift)
  sigmas[0] -= 1e-6
  timesteps = (sigmas * TRAIN_TIMESTEPS).astype(np.int64)
  return (np.append(sigmas, 0.0).astype(np.float32),
          (timesteps / TRAIN_TIMESTEPS).astype(np.float32))


def _coefficients(sigmas, log_ratios):
  """(phi, k, w, rho) from sigmas [N + 1] (scaled by t_start) and log(sigma_{i+1} / sigma_i)
  [N - 1] of the steps before the last, so that with h_i = lambda_{i+1} - lambda_i:
    predictor of step i: x_{i+1} = (sigma_{i+1} / sigma_i) x_i
                                   - alpha_{i+1} phi_i (m_i + k_i (m_i - m_{i-1})),
    corrector redoing step j: x_{j+1} = (sigma_{j+1} / sigma_j) x_j
        - alpha_{j+1} phi_j (m_j + w_j (m_j - m_{j-1}) + rho_j (m_{j+1} - m_j)),
  with phi = expm1(-h) (diffusers' h_phi_1 and, for bh2, B_h)."""
  steps = sigmas.shape[0] - 1
  log_alpha = jnp.log(1 - sigmas[:-1])
  h = log_alpha[1:] - log_alpha[:-1] - log_ratios  # steps 0..N-2
  phi = jnp.append(jnp.expm1(-h), -1.0)  # the last step's h is infinite
  # UniP-2: rho_p = 1/2 on D1 = (m_{i-1} - m_i) / r_i, r_i = -h_{i-1} / h_i (rks in diffusers).
  k = jnp.zeros(steps).at[1:-1].set(0.5 * h[1:] / h[:-1])
  # UniC-2: [[1, 1], [r_j, 1]] (rho_d1, rho) = (b1, b2), diffusers' R and b.
  hh, phi_c = -h[1:], phi[1:-1]
  phi1 = phi_c / hh - 1
  b1 = phi1 / phi_c
  b2 = 2 * (phi1 / hh - 0.5) / phi_c
  rho_d1 = (b1 - b2) / (1 + h[:-1] / h[1:])
  w = jnp.append(0.0, rho_d1 * h[1:] / h[:-1])
  rho = jnp.append(0.5, b1 - rho_d1)  # UniC-1 after the first step: rho = 1/2
  return phi, k, w, rho


def sample(velocity, x, *, steps: int, shift: float, t_start=1.0):
  """x0 from x at t_start by UniPC over `schedule` scaled by t_start; velocity(x, t) -> v with
  a scalar t. One `lax.fori_loop`, one model call per step."""
  unscaled, times = schedule(steps, shift)
  log_ratios = np.log(unscaled[1:-1].astype(np.float64) / unscaled[:-2]).astype(np.float32)
  sigmas, times = jnp.asarray(unscaled) * t_start, jnp.asarray(times) * t_start
  ratios = jnp.asarray(unscaled[1:] / unscaled[:-1])
  alphas = 1 - sigmas
  phi, k, w, rho = _coefficients(sigmas, jnp.asarray(log_ratios))

  def step(i, carry):  # x: the predictor's x_i, x_prev: x_{i-1} as corrected
    x, x_prev, m_prev, m_prev2 = carry
    m = x - sigmas[i] * velocity(x, times[i])
    j = jnp.maximum(i - 1, 0)
    corrected = ratios[j] * x_prev - alphas[i] * phi[j] * (
        m_prev + w[j] * (m_prev - m_prev2) + rho[j] * (m - m_prev))
    x = jnp.where(i > 0, corrected, x)
    x_next = ratios[i] * x - alphas[i + 1] * phi[i] * (m + k[i] * (m - m_prev))
    return x_next, x, m, m_prev

  zeros = jnp.zeros_like(x)
  return jax.lax.fori_loop(0, steps, step, (x, x, zeros, zeros))[0]
