"""Why long rollouts broke into coloured noise: the decoder, shown latents a rollout drifts to.

    python docs/results/follow_actions/decoder_drift.py RUN LATENT_CACHE STORE [STEPS]

1. Rolls RUN out for 128 frames from 8 test clips (8 prompt frames, true actions) and prints,
   per horizon, the latents' spread and the decoded frames' PSNR against the decoded truth and
   their pixel roughness (mean squared difference of vertically adjacent pixels, in [-1, 1]
   units; coloured noise is rough, a blur smooth).
2. Decodes true test latents altered one way at a time (pooled, faded towards their mean,
   their top principal component removed) and prints the same roughness.
3. Fine-tunes the decoder alone for STEPS steps (default 600, batch 16, encoder frozen, so the
   latent cache stays valid) with ``objective.latent_fade``'s fades of half of each batch,
   then repeats 1.
One thread; about 4 minutes on one core.
"""

import sys

import numpy as np
import torch
import torch.nn.functional as F

from farsight.data.store import EpisodeStore
from farsight.latents import LatentCache
from farsight.models.autoencoder import fade_latents, frames_to_images
from farsight.models.dynamics import actions_into_frames
from farsight.objectives.autoencoder import draw_fade
from farsight.sampling import rollout
from farsight.sampling.config import model_sampling
from farsight.world_model import load_world_model

torch.set_num_threads(1)
torch.manual_seed(0)
run, cache_path, store_path = sys.argv[1:4]
steps = int(sys.argv[4]) if len(sys.argv) > 4 else 600
wm = load_world_model(run)
ae, model, objective = wm.autoencoder, wm.dynamics, wm.objective
cache = LatentCache(cache_path)
level = objective.context_level

P, H = 8, 128
clips = cache.clips(P + H, 0, 1, split="test")
picked = [clips[int(i)] for i in np.linspace(0, len(clips) - 1, 8).astype(int)]
latents = torch.stack([c["latents"] for c in picked]).float()
actions_in = actions_into_frames(
    torch.stack([c["actions"] for c in picked]).long(), model.start_action
)
sampling = model_sampling(wm)
state = rollout.new_state(model, torch.Generator().manual_seed(0))
rollout.prime(
    model, state, latents[:, :P], actions_in[:, :P], sampling.policy(level), objective.schedule
)
made = rollout.generate(
    model,
    state,
    actions_in[:, P:],
    sampling,
    prediction=objective.prediction,
    schedule=objective.schedule,
    context_level=level,
).clone()
truth = latents[:, P:].clone()


def decode(z):
    with torch.no_grad():
        return ae.decode_normalized(z).clamp(-1, 1)


def roughness(images):
    return (images[..., 1:, :] - images[..., :-1, :]).pow(2).mean().item()


def psnr(a, b):
    return (10 * torch.log10(4 / (a - b).pow(2).mean(dim=(1, 2, 3)))).mean().item()


def rollout_table(tag):
    print(tag)
    print("  h     latent std  PSNR (model)  PSNR (copy-last)  roughness (model)  (truth)")
    copy = decode(latents[:, P - 1])
    for h in (1, 32, 64, 128):
        gen, ref = decode(made[:, h - 1]), decode(truth[:, h - 1])
        print(
            f"  {h:<5d} {made[:, h - 1].std():10.2f}  {psnr(gen, ref):12.2f}"
            f"  {psnr(copy, ref):16.2f}  {roughness(gen):17.3f}  {roughness(ref):7.3f}"
        )


rollout_table("1. rollouts, decoder as trained")

z = torch.stack(
    [clips[int(i)]["latents"][0] for i in np.linspace(0, len(clips) - 1, 32).astype(int)]
).float()
centre = z.mean(dim=(0, 2, 3), keepdim=True)
flat = (z - centre).permute(0, 2, 3, 1).reshape(-1, z.shape[1])
top = torch.linalg.eigh(torch.cov(flat.T))[1][:, -1].view(1, -1, 1, 1)
without_top = z - ((z - centre) * top).sum(1, keepdim=True) * top
print("2. roughness of decoded true latents, altered")
for name, altered in [
    ("as encoded", z),
    ("2x2 pooled", F.interpolate(F.avg_pool2d(z, 2), scale_factor=2, mode="nearest")),
    ("faded to 0.3 of their variation", centre + 0.3 * (z - centre)),
    ("top principal component removed", without_top),
]:
    print(f"  {name:34s} {roughness(decode(altered)):.3f}")

store = EpisodeStore(store_path)
episodes = store.split_episodes("train")
rng = np.random.default_rng(0)
ae.decoder.requires_grad_(True).train()
optimizer = torch.optim.AdamW(ae.decoder.parameters(), lr=2e-4, weight_decay=0.0)
for _step in range(steps):
    frames = []
    for _ in range(16):
        e = int(rng.choice(episodes))
        start = int(rng.integers(0, store.episodes[e].length))
        frames.append(store.read(e, start, 1, keys=("frames",))["frames"][0])
    images = frames_to_images(torch.from_numpy(np.stack(frames)))
    with torch.no_grad():
        mean = ae.encode(images)[0]
    fade = draw_fade(mean.shape[0], mean.shape[1], 3, 0.5, mean.device)
    recon = ae.decode(fade_latents(mean, fade))
    loss = (recon - images).abs().mean() + (recon - images).pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
ae.decoder.eval()
rollout_table(f"3. the same rollouts, decoder fine-tuned {steps} steps with latent_fade=0.5")
