"""Training on the model's own rollouts (``farsight.train.rollout_context``)."""

import pytest
import torch

from farsight.config import ConfigError
from farsight.dynamics_config import dynamics_tiny
from farsight.models.dynamics import DynamicsModel, actions_into_frames
from farsight.sampling import rollout
from farsight.sampling.config import SamplingConfig
from farsight.train.recipes.dynamics import RolloutContextConfig
from farsight.train.rollout_context import with_generated_context

T, EXTRA = 4, 2
SAMPLING = SamplingConfig(steps=2, context_level=0.1)
KW = dict(prediction="v", schedule="linear", context_level=0.02)


@pytest.fixture
def model_and_batch(one_thread):
    torch.manual_seed(0)
    cfg = dynamics_tiny()
    cfg.heads.offsets, cfg.heads.resolutions, cfg.heads.depths = (1,), (1,), ()
    model = DynamicsModel(cfg)
    # Break adaLN-Zero's zero init so that generated frames depend on the context.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = {
        "latents": torch.randn(6, T + EXTRA, 4, 8, 8),
        "actions": torch.randint(0, 5, (6, T + EXTRA)),
    }
    return model.train(), batch


def generated(model, batch, fraction, seed=0, min_prompt=1):
    torch.manual_seed(seed)
    cfg = RolloutContextConfig(fraction=fraction, min_prompt=min_prompt)
    return with_generated_context(model, batch, cfg, SAMPLING, T, **KW)


def test_only_the_context_after_the_prompt_is_replaced(model_and_batch):
    model, batch = model_and_batch
    out = generated(model, batch, fraction=0.5)
    true, made = batch["latents"], out["latents"]
    changed = (made != true).flatten(2).any(-1)  # (B, T + EXTRA): frames that differ
    rows = changed.any(1)
    assert int(rows.sum()) == 3  # half of the 6 clips
    for row in changed[rows]:
        first = int(row.int().argmax())
        assert 1 <= first <= T - 2
        assert row[first : T - 1].all()  # every frame after the prompt, up to the last input
        assert not row[T - 1 :].any()  # the trained frame and the far heads' targets stay true
    assert torch.equal(out["actions"], batch["actions"])
    assert model.training  # back in training mode
    assert not made.requires_grad and torch.isfinite(made).all()


def test_generated_frames_are_the_models_rollout(model_and_batch):
    """What the clip holds is what a rollout from its prompt gives: the same function as play
    and eval use, not a training-only imitation of it."""
    model, batch = model_and_batch
    out = generated(model, batch, fraction=1.0, min_prompt=2)
    torch.manual_seed(0)
    prompt = int(torch.randint(2, T - 1, ()))
    picks = torch.randperm(6)
    seed = int(torch.randint(0, 2**62, ()))
    model.eval()
    state = rollout.new_state(model, torch.Generator().manual_seed(seed))
    clips = batch["latents"][picks]
    actions_in = actions_into_frames(batch["actions"][picks], model.start_action)
    policy = SAMPLING.policy(KW["context_level"])
    rollout.prime(model, state, clips[:, :prompt], actions_in[:, :prompt], policy)
    expect = rollout.generate(model, state, actions_in[:, prompt : T - 1], SAMPLING, **KW)
    assert torch.allclose(out["latents"][picks, prompt : T - 1], expect)


def test_same_seed_same_context_and_off_is_the_identity(model_and_batch):
    model, batch = model_and_batch
    a, b = generated(model, batch, 0.5, seed=3), generated(model, batch, 0.5, seed=3)
    assert torch.equal(a["latents"], b["latents"])
    assert not torch.equal(a["latents"], generated(model, batch, 0.5, seed=4)["latents"])
    assert generated(model, batch, 0.0) is batch


def test_config_is_checked():
    RolloutContextConfig(0.5).validate("next_frame", 8)
    with pytest.raises(ConfigError, match="objective.kind"):
        RolloutContextConfig(0.5).validate("diffusion_forcing", 8)
    with pytest.raises(ConfigError, match="fraction"):
        RolloutContextConfig(1.5).validate("next_frame", 8)
    with pytest.raises(ConfigError, match="min_prompt"):
        RolloutContextConfig(0.5, min_prompt=7).validate("next_frame", 8)
    RolloutContextConfig(0.0, min_prompt=7).validate("diffusion_forcing", 8)  # off: anything


def next_frame_run(model):
    """A next-frame run config around the fixture's tiny model and clips."""
    from farsight.train.recipes.dynamics import DynamicsRunConfig

    cfg = DynamicsRunConfig()
    cfg.model = model.cfg
    cfg.data.clip_len = T
    cfg.objective.kind = "next_frame"
    cfg.grad_cosine_every = 0
    return cfg


def test_generated_contexts_start_after_start_step(model_and_batch, monkeypatch):
    from farsight.train import dynamics_objective

    model, batch = model_and_batch
    cfg = next_frame_run(model)
    cfg.rollout_context = RolloutContextConfig(fraction=0.5, start_step=2)
    calls = []

    def record(model, batch, *args, **kwargs):
        calls.append(objective.step)
        return batch

    monkeypatch.setattr(dynamics_objective, "with_generated_context", record)
    objective = dynamics_objective.TrainObjective(cfg, start_step=0, is_main=True)
    for _ in range(4):
        objective(model, batch)
    assert calls == [3, 4]
    with pytest.raises(ConfigError, match="start_step"):
        RolloutContextConfig(0.5, start_step=-1).validate("next_frame", 8)


def test_contexts_sample_with_their_own_steps(model_and_batch, monkeypatch):
    """``rollout_context.steps`` is the generating sampler's step count; the run's sampling
    (its rollouts') keeps its own."""
    from farsight.train import dynamics_objective

    model, batch = model_and_batch
    cfg = next_frame_run(model)
    cfg.sampling = SamplingConfig(steps=8, context_level=0.1)
    seen = []

    joints = []

    def record(model, batch, rc, sampling, *args, **kwargs):
        seen.append(sampling.steps)
        joints.append(kwargs.get("joint"))
        return batch

    monkeypatch.setattr(dynamics_objective, "with_generated_context", record)
    monkeypatch.setattr(dynamics_objective, "with_generated_tokens", record)
    for kind in ("next_frame", "maskgit"):  # latents, and MaskGIT's tokens
        cfg.objective.kind = kind
        for steps, expect in ((0, 8), (2, 2)):
            cfg.rollout_context = RolloutContextConfig(fraction=0.5, steps=steps)
            dynamics_objective.own_context(model, batch, cfg, T)
            assert seen[-1] == expect
    assert len(seen) == 4
    assert cfg.sampling.steps == 8
    assert joints[2:] == [False, False]  # MaskGIT's contexts drawn as its logits say
    cfg.objective.token_logits = "joint"
    dynamics_objective.own_context(model, batch, cfg, T)
    assert joints[-1] is True
    with pytest.raises(ConfigError, match="rollout_context.steps"):
        RolloutContextConfig(0.5, steps=-1).validate("next_frame", 8)
