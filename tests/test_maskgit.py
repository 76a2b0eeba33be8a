"""MaskGIT on the diffusion backbone: token views, loss only on masked tokens, no leak of
masked tokens into the input, causality, overfitting, cached sampling equals uncached."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from farsight.config import ConfigError
from farsight.dynamics_config import HeadsConfig, ObjectiveConfig, dynamics_tiny
from farsight.models.dynamics import DynamicsModel, DynamicsOutput, actions_into_frames
from farsight.models.fsq import FSQ, digits_to_indices, indices_to_digits
from farsight.models.tokens import (
    digits_to_codes,
    digits_to_latents,
    draw_tokens,
    fsq_digits,
    input_channels,
    output_channels,
    token_correct,
    token_input,
    token_nll,
)
from farsight.objectives import make_objective
from farsight.objectives.maskgit import MaskGIT, random_mask
from farsight.sampling.maskgit import generate_tokens, prime_tokens, unmask_schedule
from farsight.sampling.rollout import new_state

LEVELS = (4, 3)
B, T = 2, 6


pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(
    seed: int = 0, perturb: bool = True, heads: HeadsConfig | None = None, joint: bool = False
):
    cfg = dataclasses.replace(
        dynamics_tiny(),
        latent_channels=input_channels(LEVELS),
        out_channels=output_channels(LEVELS, joint),
        heads=heads or HeadsConfig(),
    )
    torch.manual_seed(seed)
    model = DynamicsModel(cfg)
    if perturb:  # adaLN-Zero starts every output at 0: nothing would depend on anything
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.2 * torch.randn_like(p))
    return model


def objective(joint: bool = False) -> MaskGIT:
    logits = "joint" if joint else "factorized"
    return make_objective(ObjectiveConfig(kind="maskgit", fsq_levels=LEVELS, token_logits=logits))


def make_batch(model: DynamicsModel, t: int = T, seed: int = 0) -> dict:
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    total = t + cfg.heads.max_offset - 1
    return {
        "latents": 2 * torch.randn(B, total, len(LEVELS), *cfg.latent_size, generator=g),
        "actions": torch.randint(0, cfg.num_actions, (B, total), generator=g),
    }


def test_token_views_round_trip():
    fsq = FSQ(LEVELS)
    pre = 2 * torch.randn(2, 3, len(LEVELS), 4, 4)
    digits = fsq_digits(fsq, pre)
    assert digits.min() >= 0 and all(int(digits[:, :, c].max()) < lv for c, lv in enumerate(LEVELS))
    codes = fsq(pre.flatten(0, 1)).unflatten(0, (2, 3))
    torch.testing.assert_close(digits_to_codes(digits, LEVELS), codes)
    assert torch.equal(fsq_digits(fsq, digits_to_latents(fsq, digits)), digits)
    indices = fsq.codes_to_indices(codes.flatten(0, 1))
    assert torch.equal(fsq.indices_to_codes(indices).unflatten(0, (2, 3)), codes)
    mask = torch.zeros(2, 3, 4, 4, dtype=torch.bool)
    mask[:, :, 0, 0] = True
    x = token_input(digits, mask, LEVELS)
    assert x.shape == (2, 3, len(LEVELS) + 1, 4, 4)
    assert (x[:, :, :-1, 0, 0] == 0).all() and (x[:, :, -1, 0, 0] == 1).all()
    torch.testing.assert_close(x[:, :, :-1, 1:], codes[:, :, :, 1:])


def test_joint_logits_index_the_fsq_tokens():
    fsq = FSQ(LEVELS)
    digits = fsq_digits(fsq, 2 * torch.randn(2, 3, len(LEVELS), 4, 4))
    index = digits_to_indices(digits, LEVELS, dim=2)
    codes = digits_to_codes(digits, LEVELS).flatten(0, 1)
    assert torch.equal(index.flatten(0, 1), fsq.codes_to_indices(codes))
    assert torch.equal(indices_to_digits(index, LEVELS, dim=2), digits)
    assert output_channels(LEVELS, joint=True) == 12 and output_channels(LEVELS) == 7
    # the joint cross-entropy is the whole token's NLL; a factorised softmax is one joint
    # softmax whose logits are sums of per-channel ones, so both give the same NLL there
    fact = torch.randn(2, 3, sum(LEVELS), 4, 4)
    per_channel = torch.log_softmax(fact[:, :, :4], 2), torch.log_softmax(fact[:, :, 4:], 2)
    every = torch.arange(12)
    joint_logits = torch.stack(
        [per_channel[0][:, :, i % 4] + per_channel[1][:, :, i // 4] for i in every.tolist()], 2
    )
    torch.testing.assert_close(
        token_nll(joint_logits, digits, LEVELS, joint=True), token_nll(fact, digits, LEVELS)
    )
    assert torch.equal(
        token_correct(joint_logits, digits, LEVELS, joint=True), token_correct(fact, digits, LEVELS)
    )
    with pytest.raises(ValueError, match="joint FSQ levels"):
        token_nll(fact, digits, LEVELS, joint=True)
    with pytest.raises(ConfigError, match="token_logits"):
        ObjectiveConfig(kind="maskgit", fsq_levels=LEVELS, token_logits="pairs").validate()


def test_joint_draws_pick_whole_tokens():
    """Two equally likely tokens that share no digit: joint draws give one or the other,
    never a mix; per-channel draws from the same marginals mix them half the time."""
    a, b = torch.tensor([1, 0]), torch.tensor([3, 2])  # digits of (4, 3)
    logits = torch.full((1, 12, 40, 40), -30.0)
    for digits in (a, b):
        logits[:, int(digits_to_indices(digits, LEVELS, dim=0))] = 0.0
    gen = torch.Generator().manual_seed(0)
    drawn, logp = draw_tokens(logits, LEVELS, joint=True, generator=gen)
    cells = drawn[0].flatten(1).T  # (cells, C)
    is_a, is_b = (cells == a).all(1), (cells == b).all(1)
    assert bool((is_a | is_b).all()) and 0.3 < float(is_a.float().mean()) < 0.7
    torch.testing.assert_close(logp, torch.full_like(logp, -math.log(2)), atol=1e-4, rtol=0)
    fact = torch.full((1, 7, 40, 40), -30.0)
    for digits in (a, b):
        fact[:, int(digits[0])] = 0.0
        fact[:, 4 + int(digits[1])] = 0.0
    drawn, _ = draw_tokens(fact, LEVELS, generator=torch.Generator().manual_seed(0))
    cells = drawn[0].flatten(1).T
    mixed = ~((cells == a).all(1) | (cells == b).all(1))
    assert 0.3 < float(mixed.float().mean()) < 0.7
    top, _ = draw_tokens(logits, LEVELS, joint=True, temperature=0.0)
    cells = top[0].flatten(1).T
    assert bool(((cells == a).all(1) | (cells == b).all(1)).all())


def test_random_mask_counts_and_schedule():
    counts = torch.tensor([[1, 5, 16]])
    mask = random_mask(counts, (4, 4), torch.Generator().manual_seed(0))
    assert mask.flatten(2).sum(-1).tolist() == [[1, 5, 16]]
    for steps in (1, 4, 8, 25):
        left = unmask_schedule(64, steps)
        assert left[-1] == 0 and len(left) == steps
        assert all(b < a for a, b in zip([64, *left], left, strict=False))


class LogitModel(torch.nn.Module):
    """Stands in for the backbone: returns fixed leaf logits, records its input."""

    def __init__(self, real: DynamicsModel, t: int):
        super().__init__()
        self.cfg = real.cfg
        self.real = real
        self.logits = torch.nn.Parameter(torch.randn(B, t, sum(LEVELS), *real.cfg.latent_size))

    def forward(self, x, tau, actions, clean=None, **_):
        self.seen = (x.detach().clone(), tau.detach().clone())
        far = self.real(x, tau, actions, clean=clean).far
        return DynamicsOutput(main=self.logits * 1.0, far=far)


def test_loss_only_on_masked_tokens_and_no_leak():
    real = make_model()
    fake = LogitModel(real, T)
    obj = objective()
    batch = make_batch(real)
    g = torch.Generator().manual_seed(3)
    mask = obj.sample_mask((B, T), real.cfg.latent_size, "cpu", torch.Generator().manual_seed(3))
    terms = obj.terms(fake, batch, g)
    terms.values["main"].backward()
    grad = fake.logits.grad.abs().sum(2)  # (B, T, H, W)
    assert (grad[~mask] == 0).all(), "an unmasked token contributed to the loss"
    assert (grad[mask] > 0).all()
    x, tau = fake.seen
    assert torch.equal(x[:, :, -1].bool(), mask)
    assert (x[:, :, :-1][mask.unsqueeze(2).expand_as(x[:, :, :-1])] == 0).all(), "masked leak"
    torch.testing.assert_close(tau, mask.flatten(2).float().mean(-1))
    # the masked tokens' true values change nothing the model sees
    batch2 = {**batch, "latents": batch["latents"].clone()}
    batch2["latents"][:, :T] = torch.where(
        mask.unsqueeze(2), -batch["latents"][:, :T], batch["latents"][:, :T]
    )
    obj.terms(fake, batch2, torch.Generator().manual_seed(3))
    assert torch.equal(fake.seen[0], x)


def test_next_frame_maskgit_masks_and_scores_only_the_last_frame():
    real = make_model()
    fake = LogitModel(real, T)
    cfg = ObjectiveConfig(kind="maskgit", fsq_levels=LEVELS, mask_frames="last")
    terms = make_objective(cfg).terms(fake, make_batch(real), torch.Generator().manual_seed(3))
    terms.values["main"].backward()
    x, tau = fake.seen
    assert (tau[:, :-1] == 0).all() and (tau[:, -1] > 0).all()
    assert not x[:, :-1, -1].bool().any(), "a context frame was masked"
    assert x[:, -1, -1].bool().any(dim=(1, 2)).all()
    grad = fake.logits.grad.abs().sum(2)
    assert (grad[:, :-1] == 0).all(), "a context frame was scored"
    assert torch.equal(grad[:, -1] > 0, x[:, -1, -1].bool())
    with pytest.raises(ConfigError, match="mask_frames"):
        ObjectiveConfig(kind="next_frame", mask_frames="last").validate()


def test_objective_runs_with_far_heads_and_learns_gradients():
    model = make_model(perturb=False)
    loss, logs = objective()(model, make_batch(model))
    loss.backward()
    assert torch.isfinite(loss)
    assert {"loss/main", "loss/head2", "loss/head4", "loss/head8", "acc/main"} <= set(logs)
    assert model.final.linear.weight.grad.abs().sum() > 0
    assert all(h.final.linear.weight.grad.abs().sum() > 0 for h in model.heads.heads)


def test_diffusion_only_options_are_refused():
    model = make_model(heads=HeadsConfig(aux_weight=0.1))
    with pytest.raises(ConfigError, match="aux_weight"):
        objective()(model, make_batch(model))
    with pytest.raises(ConfigError, match="fsq_levels"):
        ObjectiveConfig(kind="maskgit").validate()


def test_no_position_sees_later_frames():
    model = make_model().eval()
    batch = make_batch(model)
    fsq = FSQ(LEVELS)
    digits = fsq_digits(fsq, batch["latents"][:, :T])
    g = torch.Generator().manual_seed(0)
    mask = random_mask(torch.randint(1, 64, (B, T), generator=g), model.cfg.latent_size, g)
    x = token_input(digits, mask, LEVELS)
    tau = mask.flatten(2).float().mean(-1)
    actions = batch["actions"]
    with torch.no_grad():
        base = model(x, tau, actions)
        for cut in (0, 3):
            d2, m2 = digits.clone(), mask.clone()
            d2[:, cut + 1 :] = (d2[:, cut + 1 :] + 1) % 3
            m2[:, cut + 1 :] = ~m2[:, cut + 1 :]
            x2 = token_input(d2, m2, LEVELS)
            tau2 = m2.flatten(2).float().mean(-1)
            a2 = actions.clone()
            a2[:, cut:] = (a2[:, cut:] + 1) % model.cfg.num_actions  # a_cut leads into cut+1
            main = model(x2, tau2, a2[:, :T], heads=False).main
            changed = ((main - base.main).abs().flatten(2).amax(-1) > 1e-6).any(0)
            assert not changed[: cut + 1].any(), f"head 1 at <= {cut} saw a later frame"
            assert changed[cut + 1 :].all(), "perturbation had no effect: test is vacuous"
            far = model(x2, tau2, actions).far
            for k, pred in far.items():
                changed = ((pred - base.far[k]).abs().flatten(2).amax(-1) > 1e-6).any(0)
                assert not changed[: cut + 1].any(), f"head {k} at <= {cut} saw a later frame"
                assert changed[cut + 1 :].any()


@pytest.mark.parametrize("joint", [False, True])
def test_overfits_a_clip(joint):
    torch.manual_seed(0)
    model = make_model(perturb=False, heads=HeadsConfig(offsets=(1, 2), depths=(0,)), joint=joint)
    batch = make_batch(model, t=4)
    obj = objective(joint)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(150):
        loss, logs = obj(model, batch, torch.Generator().manual_seed(step))
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.4 * first, (first, last)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("joint", [False, True])
def test_cached_sampling_equals_uncached(temperature, joint):
    model = make_model(joint=joint).eval()
    fsq = FSQ(LEVELS)
    prompt = fsq_digits(fsq, 2 * torch.randn(1, 3, len(LEVELS), *model.cfg.latent_size))
    actions_in = actions_into_frames(torch.tensor([[1, 2, 3]]), model.start_action)
    future = torch.tensor([[4, 0, 2, 1, 3]])
    runs = []
    for kv_cache, full_history in ((True, False), (False, True)):
        state = new_state(
            model, torch.Generator().manual_seed(5), kv_cache=kv_cache, full_history=full_history
        )
        prime_tokens(model, state, prompt, actions_in, LEVELS)
        runs.append(
            generate_tokens(
                model, state, future, LEVELS, steps=4, temperature=temperature, joint=joint
            )
        )
    assert runs[0].shape == (1, 5, len(LEVELS), *model.cfg.latent_size)
    assert torch.equal(runs[0], runs[1])
    logits = torch.zeros(1, 1, output_channels(LEVELS, joint), 8, 8)
    nll = token_nll(logits, runs[0][:, :1], LEVELS, joint)
    assert torch.isfinite(nll).all()


def test_generated_token_contexts_are_the_models_rollout():
    """``rollout_context`` on next-frame MaskGIT: the picked clips' frames after the prompt are
    the tokens a MaskGIT rollout from that prompt samples (the play and eval path), written
    as latents that quantize to exactly those tokens; the prompt, the trained last frame and
    the other clips stay true. Every-frame MaskGIT, which would score generated frames, is
    refused."""
    from farsight.sampling.config import SamplingConfig
    from farsight.train.recipes.dynamics import DynamicsRunConfig, RolloutContextConfig
    from farsight.train.rollout_context import with_generated_tokens

    model = make_model(heads=HeadsConfig(offsets=(1,), resolutions=(1,), depths=())).train()
    batch = make_batch(model, t=5, seed=1)
    sampling = SamplingConfig(steps=3, temperature=1.0)
    cfg = RolloutContextConfig(fraction=0.5, min_prompt=2)
    torch.manual_seed(0)
    out = with_generated_tokens(model, batch, cfg, sampling, 5, levels=LEVELS)
    assert model.training and not out["latents"].requires_grad

    torch.manual_seed(0)
    prompt = int(torch.randint(2, 4, ()))
    picks = torch.randperm(B)[:1]
    seed = int(torch.randint(0, 2**62, ()))
    fsq = FSQ(LEVELS)
    digits = fsq_digits(fsq, batch["latents"])
    model.eval()
    state = new_state(model, torch.Generator().manual_seed(seed))
    actions_in = actions_into_frames(batch["actions"][picks], model.start_action)
    prime_tokens(model, state, digits[picks, :prompt], actions_in[:, :prompt], LEVELS)
    want = generate_tokens(model, state, actions_in[:, prompt:4], LEVELS, steps=3, temperature=1.0)
    got = fsq_digits(fsq, out["latents"])
    assert torch.equal(got[picks, prompt:4], want)
    changed = (got != digits).flatten(2).any(-1)
    assert changed[picks, prompt:4].any()  # the rollout differs from the truth somewhere
    assert not changed[:, :prompt].any() and not changed[:, 4:].any()
    others = torch.ones(B, dtype=torch.bool)
    others[picks] = False
    assert torch.equal(out["latents"][others], batch["latents"][others])

    run = DynamicsRunConfig()
    run.objective = ObjectiveConfig(kind="maskgit", fsq_levels=LEVELS, mask_frames="last")
    run.rollout_context.fraction = 0.5
    run.validate()
    run.objective.mask_frames = "all"
    with pytest.raises(ConfigError, match="mask_frames"):
        run.validate()
