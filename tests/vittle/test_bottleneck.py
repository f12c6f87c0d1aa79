import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from vittle.bottleneck import VittleBottleneck, gaussian_kl
from vittle.config import BottleneckConfig


def test_gaussian_kl_matches_the_closed_form_and_torch():
    gen = torch.Generator().manual_seed(0)
    mu_q, mu_p = torch.randn(5, 7, generator=gen), torch.randn(5, 7, generator=gen)
    lv_q, lv_p = torch.randn(5, 7, generator=gen), torch.randn(5, 7, generator=gen)
    ours = gaussian_kl(mu_q, lv_q, mu_p, lv_p)
    reference = kl_divergence(Normal(mu_q, (0.5 * lv_q).exp()), Normal(mu_p, (0.5 * lv_p).exp()))
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)
    # One element by hand: q = N(1, e^0.5), p = N(0, 1).
    by_hand = 0.5 * (0.0 - 0.5 - 1.0 + (1.0 + math.exp(0.5)))
    assert gaussian_kl(torch.tensor(1.0), torch.tensor(0.5), torch.tensor(0.0), torch.tensor(0.0)).item() == pytest.approx(by_hand)


def test_gaussian_kl_is_zero_at_the_prior_and_its_optimal_variance_is_one():
    assert gaussian_kl(torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3)).abs().max() == 0
    logvars = torch.linspace(-2.3, 2.3, 461)
    kl = gaussian_kl(torch.zeros_like(logvars), logvars, torch.zeros(1), torch.zeros(1))
    assert logvars[kl.argmin()].abs() < 1e-6  # variance 1, not the 0.5 of the half-log-variance variant
    assert (kl >= 0).all()


def _bottleneck(**overrides):
    torch.manual_seed(0)
    return VittleBottleneck(BottleneckConfig(**overrides), hidden_size=8)


def test_each_modality_goes_through_its_own_mlp():
    bottleneck = _bottleneck().eval()
    hidden = torch.randn(2, 5, 8)
    mask = torch.tensor([[True, True, False, False, False], [False, True, False, False, True]])
    mu, logvar = bottleneck.posterior(hidden, mask)
    mu_v, lv_v = bottleneck.visual(hidden[mask])
    mu_t, lv_t = bottleneck.text(hidden[~mask])
    torch.testing.assert_close(mu[mask], mu_v)
    torch.testing.assert_close(mu[~mask], mu_t)
    torch.testing.assert_close(logvar[~mask], lv_t)
    assert not torch.allclose(mu_v, bottleneck.text(hidden[mask])[0])


def test_record_states_gives_each_forward_to_its_caller():
    from vittle.bottleneck import record_states

    bottleneck = _bottleneck(alpha_max=0.5).eval()
    hidden, mask = torch.randn(2, 4, 8), torch.tensor([[True, False, False, False]] * 2)
    with record_states() as states:
        out = bottleneck(hidden, mask)
        bottleneck(hidden[:1], mask[:1])
    assert not hasattr(bottleneck, "last") and len(states) == 2  # nothing kept on the module
    torch.testing.assert_close(out, 0.5 * hidden + 0.5 * states[0].mu)
    assert states[1].hidden.shape == (1, 4, 8) and states[0].alpha == 0.5
    kl_v, kl_t = bottleneck.kl_terms(state=states[0])
    torch.testing.assert_close(bottleneck.kl_terms(state=bottleneck.run(hidden, mask)), (kl_v, kl_t))  # run: the record itself
    with record_states() as inner:
        bottleneck(hidden[:1], mask[:1])
    assert len(inner) == 1 and inner[0].hidden.shape == (1, 4, 8)


def test_inference_mixes_with_the_mean_and_training_samples():
    bottleneck = _bottleneck(alpha_max=0.5).eval()
    hidden, mask = torch.randn(1, 4, 8), torch.tensor([[True, False, False, False]])
    state = bottleneck.run(hidden, mask)
    torch.testing.assert_close(state.output, 0.5 * hidden + 0.5 * state.mu)
    bottleneck.train()
    bottleneck.train_alpha = 0.3
    torch.manual_seed(1)
    state = bottleneck.run(hidden, mask)
    out1 = state.output
    torch.manual_seed(1)
    noise = torch.randn_like(hidden)
    torch.testing.assert_close(out1, 0.7 * hidden + 0.3 * (state.mu + (0.5 * state.logvar).exp() * noise))
    assert not torch.allclose(out1, bottleneck(hidden, mask))  # a fresh sample each call


def test_alpha_zero_is_exactly_the_identity_and_logvar_is_clamped():
    bottleneck = _bottleneck(alpha_max=0.0, logvar_clamp=0.1).eval()
    hidden = torch.randn(2, 3, 8) * 100
    state = bottleneck.run(hidden, torch.zeros(2, 3, dtype=torch.bool))
    assert torch.equal(state.output, hidden) and state.alpha == 0.0
    assert state.logvar.abs().max() <= 0.1 + 1e-7


def test_kl_terms_average_over_the_right_tokens():
    bottleneck = _bottleneck(prior="learnable").eval()
    with torch.no_grad():
        bottleneck.visual_prior.mean.fill_(0.3)
    hidden = torch.randn(1, 4, 8)
    mask = torch.tensor([[True, True, False, False]])
    state = bottleneck.run(hidden, mask)
    kl_v, kl_t = bottleneck.kl_terms(state=state)
    expected_v = gaussian_kl(state.mu[0, :2], state.logvar[0, :2], torch.full((8,), 0.3), torch.zeros(8)).mean()
    expected_t = gaussian_kl(state.mu[0, 2:], state.logvar[0, 2:], torch.zeros(8), torch.zeros(8)).mean()
    torch.testing.assert_close(kl_v, expected_v)
    torch.testing.assert_close(kl_t, expected_t)
    scope = torch.tensor([[True, True, True, False]])  # only the first text token counts
    _, kl_t_scoped = bottleneck.kl_terms(scope, state)
    torch.testing.assert_close(kl_t_scoped, gaussian_kl(state.mu[0, 2], state.logvar[0, 2], torch.zeros(8), torch.zeros(8)).mean())


def test_text_only_input_gives_zero_visual_kl_with_a_graph():
    bottleneck = _bottleneck().train()
    state = bottleneck.run(torch.randn(1, 3, 8), torch.zeros(1, 3, dtype=torch.bool))
    kl_v, kl_t = bottleneck.kl_terms(state=state)
    assert kl_v.item() == 0.0 and kl_t.item() > 0
    (kl_v + kl_t).backward()
    assert bottleneck.text.fc1.weight.grad is not None
    # The visual MLP gets an (all-zero) gradient too, so DDP sees every parameter used.
    assert bottleneck.visual.fc1.weight.grad is not None and bottleneck.visual.fc1.weight.grad.abs().sum() == 0


@pytest.mark.parametrize("visual", [False, True])
def test_autocast_keeps_the_hidden_dtype(visual):
    bottleneck = _bottleneck().train()
    bottleneck.train_alpha = 0.5
    hidden = torch.randn(1, 4, 8)
    mask = torch.tensor([[visual, False, False, False]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        state = bottleneck.run(hidden, mask)
    assert state.output.dtype == torch.float32 and state.mu.dtype == torch.float32


def test_priors_fixed_has_no_parameters_learnable_has_four_vectors():
    fixed, learnable = _bottleneck(prior="fixed"), _bottleneck(prior="learnable")
    assert not any("prior" in name for name in fixed.state_dict())
    names = sorted(n for n in learnable.state_dict() if "prior" in n)
    assert names == ["text_prior.logvar", "text_prior.mean", "visual_prior.logvar", "visual_prior.mean"]
    assert all(learnable.state_dict()[n].abs().sum() == 0 for n in names)  # initialized at zero


def test_kl_without_a_forward_s_state_is_a_clear_error():
    with pytest.raises(ValueError, match="no bottleneck state given: pass the forward's own, `outputs.vittle`"):
        _bottleneck().kl_terms()


def test_rms_scale_variant_works_in_normalized_units():
    bottleneck = _bottleneck(alpha_max=0.5, scale="rms").eval()
    hidden, mask = torch.randn(1, 4, 8) * 7.0, torch.tensor([[True, False, False, False]])
    state = bottleneck.run(hidden, mask)
    out = state.output
    rms = hidden.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()
    torch.testing.assert_close(out, 0.5 * hidden + 0.5 * rms * state.mu)
    mu, _ = bottleneck.posterior(hidden / rms, mask)  # the posterior reads h / rms(h)
    torch.testing.assert_close(state.mu, mu)
    # scaling h leaves the posterior unchanged and scales the output
    state10 = bottleneck.run(10 * hidden, mask)
    out10 = state10.output
    torch.testing.assert_close(state10.mu, state.mu, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out10, 10 * out, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="scale='layer'"):
        BottleneckConfig(scale="layer")


def test_logvar_clamp_passes_the_gradient_through_like_the_authors_inplace_clamp():
    bottleneck = _bottleneck(logvar_clamp=1.0).train()
    with torch.no_grad():  # push every log-variance far below the clamp
        bottleneck.text.fc2.bias[8:].fill_(-50.0)
    bottleneck.train_alpha = 0.5
    state = bottleneck.run(torch.randn(1, 3, 8), torch.zeros(1, 3, dtype=torch.bool))
    assert torch.allclose(state.logvar, torch.full_like(state.logvar, -1.0))  # clamped in value
    _, kl_t = bottleneck.kl_terms(state=state)
    kl_t.backward()
    grad = bottleneck.text.fc2.bias.grad[8:]
    # d KL / d logvar = 0.5 * (exp(logvar) - 1) at the clamped value -1, passed through unchanged:
    # a plain clamp() would give exactly 0 here, and the KL could never pull the variance back.
    torch.testing.assert_close(grad, torch.full_like(grad, 3 * 0.5 * (math.exp(-1.0) - 1.0) / (3 * 8)))


def test_learnable_prior_logvar_is_clamped_too():
    bottleneck = _bottleneck(prior="learnable", logvar_clamp=1.0).eval()
    with torch.no_grad():
        bottleneck.visual_prior.logvar.fill_(5.0)
    hidden, mask = torch.randn(1, 2, 8), torch.tensor([[True, False]])
    state = bottleneck.run(hidden, mask)
    expected = gaussian_kl(state.mu[0, 0], state.logvar[0, 0], torch.zeros(8), torch.ones(8))  # prior log-variance 1, not 5
    torch.testing.assert_close(bottleneck.token_kl(state)[0, 0], expected)


def test_posterior_mlps_start_from_the_llm_initialisation():
    torch.manual_seed(0)
    bottleneck = VittleBottleneck(BottleneckConfig(), hidden_size=256, init_std=0.02)
    for mlp in (bottleneck.visual, bottleneck.text):
        for layer in (mlp.fc1, mlp.fc2):
            assert layer.weight.std().item() == pytest.approx(0.02, rel=0.05)
            assert layer.bias.abs().max().item() == 0
    # so a fresh posterior starts near the prior: small mean, unit variance, KL far below 1 nat/dim
    state = bottleneck.eval().run(torch.randn(1, 4, 256), torch.tensor([[True, True, False, False]]))
    assert bottleneck.token_kl(state).mean().item() < 0.01


def test_noise_control_has_no_mlp_no_kl_and_mixes_in_pure_noise():
    bottleneck = _bottleneck(kind="noise", alpha_max=0.5)
    assert bottleneck.visual is None and bottleneck.text is None and not list(bottleneck.parameters())
    assert not bottleneck.state_dict()
    hidden, mask = torch.randn(2, 3, 8) * 4, torch.tensor([[True, False, False], [False, True, False]])
    torch.testing.assert_close(bottleneck.eval()(hidden, mask), 0.5 * hidden)  # inference: the noise's mean, 0
    bottleneck.train()
    bottleneck.train_alpha = 0.5
    torch.manual_seed(3)
    state = bottleneck.run(hidden, mask)
    torch.manual_seed(3)
    torch.testing.assert_close(state.output, 0.5 * hidden + 0.5 * torch.randn_like(hidden))
    kl_v, kl_t = bottleneck.kl_terms(state=state)
    assert kl_v.item() == 0.0 and kl_t.item() == 0.0
