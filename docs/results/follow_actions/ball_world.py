"""Can a recipe carry a moving ball? A synthetic Breakout in latent space, minutes on a CPU.

Breakout's dynamics erase the ball (``object_estimates.py``). This world isolates that: a
16 x 16 x 8 latent grid, a faint static texture, a one-cell ball (norm 0.9, about Breakout's
ball cell change in ``ae_atari``'s latents) moving one cell per frame diagonally and bouncing
off the walls, and a 3-cell paddle on the bottom row that the action moves (no-op, left,
right). The ball's next cell follows from its last two; nothing about it is random after the
first frame, so a model that has learned the dynamics draws it exactly.

A recipe (``dyn_quickstart`` by default) is trained here with its own objective and
optimiser settings at a smaller size (``model.depth=2 model.width=64 model.num_heads=4``
unless overridden), head 1 only, without EMA, warm-up or ``rollout_context``; then rollouts
of 8 frames from 4 true frames, sampled as the recipe samples, are searched for the ball at
h = 1, 2, 4, 8:

- ``hit``: the cell most like the ball (above the paddle row) is the ball's true cell,
  with a 95% Wilson interval over the clips (copy-last-frame: 0, the ball always moves);
- ``made``: the median share of the ball the rollout draws at its true cell (1: drawn,
  0: absent; copy-last-frame 0);
- ``stays``: the same at the ball's cell in the last true frame (copy-last-frame: 1).

    python docs/results/follow_actions/ball_world.py [--recipe dyn_quickstart] \
        [--steps 1200] [--clips 128] [key.sub=value ...]

Overrides are those of ``farsight train dynamics`` (e.g. objective.context_level_max=0).
``--clean-steps N`` trains the first N steps with a clean context (a schedule for the
context noise: learn the objects first, then the noise). ``--ball-speed 1/n`` (0.5, 0.25)
moves the ball a fraction of a cell per frame, as Breakout's ball moves half of one of
``ae_atari``'s 4-pixel cells: the ball is then drawn at its cell with one of n x n vectors
(all of norm 0.9), one per offset inside the cell, as an autoencoder writes where in its cell
a small object is; ``hit`` asks for the cell and ``made`` for the offset's vector there, and
copy-last-frame hits whenever the ball is still in its last cell (``copy_hit``, printed).
Prints one JSON line per evaluation (four during training).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace

import torch

from farsight.config import ConfigError, build_config
from farsight.models.dynamics import DynamicsModel, actions_into_frames
from farsight.objectives import make_objective
from farsight.sampling.rollout import generate, new_state, prime
from farsight.train.recipes.dynamics import DYNAMICS_RECIPES

GRID, CHANNELS, ACTIONS = 16, 8, 3
SMALL = ["model.depth=2", "model.width=64", "model.num_heads=4"]


def object_vectors(seed: int = 123) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ball, paddle = torch.randn(2, CHANNELS, generator=g)
    return 0.9 * ball / ball.norm(), 2.0 * paddle / paddle.norm()


BALL, PADDLE = object_vectors()


def ball_codes(per_cell: int) -> torch.Tensor:
    """(per_cell**2, C): the ball's vector for each offset inside its cell (row-major over the
    offsets (i, j) / per_cell); offset (0, 0) is ``BALL``, so one per cell is the whole-cell
    world unchanged."""
    if per_cell == 1:
        return BALL[None]
    others = torch.randn(
        per_cell * per_cell - 1, CHANNELS, generator=torch.Generator().manual_seed(321)
    )
    return torch.cat([BALL[None], 0.9 * others / others.norm(dim=-1, keepdim=True)])


def clips(batch: int, frames: int, g: torch.Generator, per_cell: int = 1):
    """Latents (B, T, C, G, G), actions (B, T) (a_t moves the paddle after frame t), and the
    ball's cell (B, T, 2) and offset's code index (B, T) per frame. The ball moves
    1 / ``per_cell`` of a cell per frame along each axis."""
    actions = torch.randint(0, ACTIONS, (batch, frames), generator=g)
    # positions in units of 1 / per_cell cells (integers, so bounces stay exact)
    ball = torch.stack(
        [
            torch.randint(per_cell, (GRID - 3) * per_cell, (batch,), generator=g),
            torch.randint(0, (GRID - 1) * per_cell + 1, (batch,), generator=g),
        ],
        1,
    )
    velocity = torch.randint(0, 2, (batch, 2), generator=g) * 2 - 1
    codes = ball_codes(per_cell)
    paddle = torch.randint(0, GRID - 2, (batch,), generator=g)
    texture = 0.1 * torch.randn(batch, 1, CHANNELS, GRID, GRID, generator=g)
    x = texture.repeat(1, frames, 1, 1, 1)
    rows = torch.arange(batch)
    cells, offsets = [], []
    # the ball stays above the paddle row
    highest = torch.tensor([(GRID - 2) * per_cell, (GRID - 1) * per_cell])
    for t in range(frames):
        cell, offset = ball // per_cell, ball % per_cell
        which = offset[:, 0] * per_cell + offset[:, 1]
        x[rows, t, :, cell[:, 0], cell[:, 1]] += codes[which]
        for k in range(3):
            x[rows, t, :, GRID - 1, paddle + k] += PADDLE
        cells.append(cell)
        offsets.append(which)
        step = ball + velocity
        velocity = torch.where((step < 0) | (step > highest), -velocity, velocity)
        ball = ball + velocity
        move = torch.tensor([0, -1, 1])[actions[:, t]]
        paddle = (paddle + move).clamp(0, GRID - 3)
    return x, actions, torch.stack(cells, 1), torch.stack(offsets, 1)


def ball_search(
    x: torch.Tensor, cells: torch.Tensor, which: torch.Tensor, codes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hit (B, T): the cell most like any of the ball's codes is its true cell; and the share
    of the ball's true code (``which``, (B, T)) made at its true cell (B, T), in frames x."""
    share = torch.einsum("btchw,kc->btkhw", x.float(), codes / codes.pow(2).sum(-1, keepdim=True))
    share = share - share.median(-1, keepdim=True).values.median(-2, keepdim=True).values
    field = share.amax(2)[:, :, : GRID - 1].flatten(2)
    best = field.argmax(-1)
    hit = (best // GRID == cells[..., 0]) & (best % GRID == cells[..., 1])
    b, t = cells.shape[:2]
    bi, ti = torch.arange(b)[:, None], torch.arange(t)
    at = share[bi, ti, which, cells[..., 0], cells[..., 1]]
    return hit.float(), at


def wilson(p: float, n: int, z: float = 1.96) -> list[float]:
    """The 95% Wilson score interval of a share p of n, to 2 decimals (inside [0, 1])."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 2), round(min(1.0, centre + half), 2)]


@torch.no_grad()
def evaluate(
    model: DynamicsModel, cfg, clips_n: int, per_cell: int, context: int = 4, horizon: int = 8
):
    g = torch.Generator().manual_seed(7)
    x, actions, cells, which = clips(clips_n, context + horizon, g, per_cell)
    codes = ball_codes(per_cell)
    actions_in = actions_into_frames(actions, model.start_action)
    state = new_state(model, torch.Generator().manual_seed(1))
    obj, samp = cfg.objective, cfg.sampling
    policy = samp.policy(obj.context_level)
    prime(model, state, x[:, :context], actions_in[:, :context], policy, obj.schedule)
    out = generate(
        model,
        state,
        actions_in[:, context:],
        samp,
        prediction=obj.prediction,
        schedule=obj.schedule,
        context_level=obj.context_level,
    )
    hit, made = ball_search(out, cells[:, context:], which[:, context:], codes)
    last_cell = cells[:, context - 1 : context].expand(-1, horizon, -1)
    _, stays = ball_search(
        out, last_cell, which[:, context - 1 : context].expand(-1, horizon), codes
    )
    # copy-last-frame's hit: 0 when the ball moves a whole cell a frame, not below that
    copy = x[:, context - 1 : context].expand(-1, horizon, -1, -1, -1)
    copy_hit, _ = ball_search(copy, cells[:, context:], which[:, context:], codes)
    row = {}
    for h in (1, 2, 4, 8):
        p = float(hit[:, h - 1].mean())
        row[f"h{h}"] = {
            "hit": round(p, 2),
            "ci": wilson(p, clips_n),
            "made": round(float(made[:, h - 1].median()), 2),
            "stays": round(float(stays[:, h - 1].median()), 2),
            "copy_hit": round(float(copy_hit[:, h - 1].mean()), 2),
        }
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default="dyn_quickstart")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--clips", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--clean-steps",
        type=int,
        default=0,
        help="train the first N steps with a clean context (no context noise augmentation)",
    )
    p.add_argument(
        "--ball-speed",
        type=float,
        default=1.0,
        help="cells the ball moves per frame along each axis: 1, or 1/n (0.5, 0.25)",
    )
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    if args.steps < 1 or args.clips < 1 or args.clean_steps < 0:
        raise SystemExit(
            f"--steps {args.steps} and --clips {args.clips} must be >= 1, "
            f"--clean-steps {args.clean_steps} >= 0"
        )
    per_cell = round(1 / args.ball_speed) if args.ball_speed > 0 else 0
    if per_cell < 1 or abs(per_cell * args.ball_speed - 1) > 1e-6:
        raise SystemExit(f"--ball-speed {args.ball_speed}: 1 or 1/n for a whole n (0.5, 0.25)")
    torch.set_num_threads(args.threads)
    fixed = [
        f"model.latent_channels={CHANNELS}",
        f"model.latent_size=[{GRID},{GRID}]",
        f"model.num_actions={ACTIONS}",
        "model.heads.offsets=[1]",
    ]
    try:
        cfg = build_config(DYNAMICS_RECIPES, args.recipe, args.overrides, SMALL + fixed)
        if cfg.objective.kind == "maskgit":
            raise ConfigError(f"--recipe {args.recipe}: a diffusion recipe needed, not maskgit")
        cfg.validate()
    except ConfigError as e:
        raise SystemExit(str(e)) from None
    torch.manual_seed(args.seed)
    model = DynamicsModel(cfg.model)
    objective = make_objective(cfg.objective)
    clean = make_objective(replace(cfg.objective, context_level_max=0.0, context_noise_share=1.0))
    optim = cfg.train.optim
    opt = torch.optim.AdamW(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
    g = torch.Generator().manual_seed(args.seed)
    frames = cfg.data.clip_len
    start = time.time()
    for step in range(1, args.steps + 1):
        latents, actions, _, _ = clips(cfg.train.batch_size, frames, g, per_cell)
        step_objective = clean if step <= args.clean_steps else objective
        loss, _ = step_objective(model, {"latents": latents, "actions": actions}, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % max(1, args.steps // 4) == 0:
            row = {"step": step, "seconds": round(time.time() - start)}
            row.update(evaluate(model.eval(), cfg, args.clips, per_cell))
            model.train()
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
