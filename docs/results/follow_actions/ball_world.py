"""Can a recipe carry a moving ball? A synthetic Breakout in latent space, minutes on a CPU.

Breakout's dynamics erase the ball (``object_estimates.py``). This world isolates that: a
16 x 16 x 8 latent grid, a faint static texture (``--texture``, the std of its values, 0.1),
a one-cell ball (norm 0.9, about Breakout's ball cell change in ``ae_atari``'s latents)
moving one cell per frame diagonally and bouncing off the walls, and a 3-cell paddle on the
bottom row that the action moves (no-op, left, right). The ball's next cell follows from its
last two; nothing about it is random after the first frame, so a model that has learned the
dynamics draws it exactly.

A recipe (``dyn_quickstart`` by default) is trained here with its own objective and
optimiser settings at a smaller size (``model.depth=2 model.width=64 model.num_heads=4``
unless overridden), head 1 only, without EMA, warm-up or ``rollout_context``; then rollouts
of 8 frames from 4 true frames, sampled as the recipe samples, are searched for the ball at
h = 1, 2, 4, 8:

- ``hit``: the cell most like the ball (above the paddle row) is the ball's true cell,
  with a 95% Wilson interval over the clips (copy-last-frame: 0, the ball always moves);
- ``made``: the median share of the ball the rollout draws at its true cell (1: drawn,
  0: absent; copy-last-frame 0);
- ``stays``: the same at the ball's cell in the last true frame (copy-last-frame: 1);
- ``mse``: the whole frame's mean squared error, beside copy-last-frame's (``copy_mse``),
  and without the two outer columns (``mse_inner``).

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
``--camera M`` puts the view on a world 2M cells wider than it, as the arena's view follows
its player: the action scrolls the view one cell left or right (held at the world's edges)
instead of moving the paddle (drawn fixed in the middle of the bottom row), the texture is
the world's, and the ball moves and bounces in the world; a ball's move in the view is then
its own move minus the view's. The world's outermost columns are walls (a fixed vector, the
ball bouncing off them), in the view exactly when the view is held at its edge, as the
arena's walls show why its view stops; ``--hidden-edges`` leaves them out (texture there
too), so whether an action scrolls the view cannot be told from the frames;
``--still-texture`` keeps the texture still and the view unbounded (no walls), so the action
changes nothing but the ball's move in the view (its own move minus the view's);
``--endless`` is that world with the texture scrolling with the view (a world wider than any
clip's view reaches, whatever M: no walls, no stops, no side bounces). Its figures
count the frames where the ball is in the view (``n``), at h = 1 also split by whether the
view scrolled between the last true frame and the first generated one (``hit_still``,
``hit_scrolled``); ``rides`` is the share of the ball drawn where the view's move alone
would carry its last cell (the ball treated as part of the texture).
Prints one JSON line per evaluation (four during training, and one at the last step).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

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
WALL = 2.0 * F.normalize(torch.randn(CHANNELS, generator=torch.Generator().manual_seed(5)), dim=0)


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


@dataclass(frozen=True)
class World:
    """The world's options (``--camera``, ``--hidden-edges`` as ``walls=False``,
    ``--still-texture``, ``--texture``, ``--endless``)."""

    camera: int = 0
    walls: bool = True
    still_texture: bool = False
    texture: float = 0.1
    endless: bool = False

    @property
    def unbounded(self) -> bool:
        """A camera whose view is held nowhere: no walls, no stops, no side bounces."""
        return bool(self.camera) and (self.still_texture or self.endless)

    @property
    def walls_shown(self) -> bool:
        return bool(self.camera) and self.walls and not self.unbounded


def clips(batch: int, frames: int, g: torch.Generator, per_cell: int = 1, world: World = World()):
    """Latents (B, T, C, G, G), actions (B, T) (a_t moves the paddle, or with ``camera`` M the
    view, after frame t), the ball's cell in the view (B, T, 2), its offset's code index
    (B, T), whether it is in the view (B, T) and the view's column in the world (B, T). The
    ball moves 1 / ``per_cell`` of a cell per frame along each axis."""
    camera, texture = world.camera, world.texture
    # an endless world: wide enough that no clip's view reaches an edge
    margin = frames if world.endless else camera
    width = GRID + 2 * margin  # the world's columns
    actions = torch.randint(0, ACTIONS, (batch, frames), generator=g)
    view = torch.zeros(batch, dtype=torch.long)
    if world.endless:
        view = torch.full((batch,), margin)
    elif camera:
        view = torch.randint(0, 2 * camera + 1, (batch,), generator=g)
    # positions in units of 1 / per_cell cells (integers, so bounces stay exact), in the view
    # at the first frame
    ball = torch.stack(
        [
            torch.randint(per_cell, (GRID - 3) * per_cell, (batch,), generator=g),
            torch.randint(0, (GRID - 1) * per_cell + 1, (batch,), generator=g) + view * per_cell,
        ],
        1,
    )
    velocity = torch.randint(0, 2, (batch, 2), generator=g) * 2 - 1
    codes = ball_codes(per_cell)
    paddle = torch.randint(0, GRID - 2, (batch,), generator=g)
    if camera:
        paddle = torch.full((batch,), GRID // 2 - 1)
    floor = texture * torch.randn(batch, CHANNELS, GRID, width, generator=g)
    lowest = torch.zeros(2, dtype=torch.long)
    highest = torch.tensor([(GRID - 2) * per_cell, (width - 1) * per_cell])
    start = view.clone()
    if world.unbounded:
        # no walls, no bounds, so no side bounces: with the texture still, the ball's move in
        # the view alone depends on the action; endless, the texture scrolls as well
        lowest[1], highest[1] = -(10**9), 10**9
    elif world.walls_shown:
        floor[..., 0] = floor[..., -1] = WALL[:, None]
        lowest[1], highest[1] = per_cell, (width - 2) * per_cell
        ball[:, 1] = ball[:, 1].clamp(lowest[1], highest[1])
    x = torch.zeros(batch, frames, CHANNELS, GRID, GRID)
    rows = torch.arange(batch)
    columns = torch.arange(GRID)
    cells, offsets, seen, views = [], [], [], []
    # the ball stays above the paddle row (and off the walls)
    for t in range(frames):
        shown_view = start if world.still_texture else view
        x[:, t] = floor[rows[:, None], :, :, shown_view[:, None] + columns].permute(0, 2, 3, 1)
        cell, offset = ball // per_cell, ball % per_cell
        cell = cell - torch.stack([torch.zeros_like(view), view], 1)
        inside = (cell[:, 1] >= 0) & (cell[:, 1] < GRID)
        which = offset[:, 0] * per_cell + offset[:, 1]
        shown = rows[inside]
        x[shown, t, :, cell[inside, 0], cell[inside, 1]] += codes[which[inside]]
        for k in range(3):
            x[rows, t, :, GRID - 1, paddle + k] += PADDLE
        cells.append(cell.clamp(0, GRID - 1))
        offsets.append(which)
        seen.append(inside)
        views.append(view)
        step = ball + velocity
        velocity = torch.where((step < lowest) | (step > highest), -velocity, velocity)
        ball = ball + velocity
        move = torch.tensor([0, -1, 1])[actions[:, t]]
        if camera:
            view = view + move if world.unbounded else (view + move).clamp(0, 2 * camera)
        else:
            paddle = (paddle + move).clamp(0, GRID - 3)
    return (
        x,
        actions,
        torch.stack(cells, 1),
        torch.stack(offsets, 1),
        torch.stack(seen, 1),
        torch.stack(views, 1),
    )


def ball_search(
    x: torch.Tensor,
    cells: torch.Tensor,
    which: torch.Tensor,
    codes: torch.Tensor,
    walls: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hit (B, T): the cell most like any of the ball's codes is its true cell; and the share
    of the ball's true code (``which``, (B, T)) made at its true cell (B, T), in frames x.
    ``walls`` (B, T, G) bool: the view's columns that truly hold a wall, left out of the
    search (the ball never enters them, and a wall cell scores about as high as a ball)."""
    share = torch.einsum("btchw,kc->btkhw", x.float(), codes / codes.pow(2).sum(-1, keepdim=True))
    share = share - share.median(-1, keepdim=True).values.median(-2, keepdim=True).values
    field = share.amax(2)
    if walls is not None:
        field = field.masked_fill(walls[:, :, None, :], float("-inf"))
    field = field[:, :, : GRID - 1].flatten(2)
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


def draw_strip(truth: torch.Tensor, made: torch.Tensor, path: str, scale: int = 6) -> None:
    """A picture of a few clips: for each, the true frames over the generated ones, from the
    last true frame on (columns). Each latent cell is a square: red the ball's share (its
    whole-cell code's), green the paddle's, blue the wall's; the texture is the faint
    rest. truth, made (B, T, C, G, G) latents."""
    import numpy as np
    from PIL import Image, ImageDraw

    def rgb(x: torch.Tensor) -> np.ndarray:
        # each cell's least-squares mix of the three vectors: one colour each, not their overlaps
        unmix = torch.linalg.pinv(torch.stack([BALL, PADDLE, WALL]))  # (C, 3)
        share = torch.einsum("tchw,ck->tkhw", x.float(), unmix)
        img = (share.clamp(0, 1) * 255).byte().permute(0, 2, 3, 1).numpy()  # (T, G, G, 3)
        return img.repeat(scale, 1).repeat(scale, 2)

    gap, label = 4, 14
    side = GRID * scale
    rows = [(f"clip {i} true", truth[i]) for i in range(truth.shape[0])]
    rows = [r for i in range(truth.shape[0]) for r in (rows[i], (f"clip {i} model", made[i]))]
    width = truth.shape[1] * (side + gap)
    canvas = Image.new("RGB", (width, len(rows) * (side + gap + label)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (name, frames) in enumerate(rows):
        top = r * (side + gap + label)
        draw.text((2, top), name, fill="black")
        for t, img in enumerate(rgb(frames)):
            canvas.paste(Image.fromarray(img), (t * (side + gap), top + label))
    canvas.save(path)


@torch.no_grad()
def evaluate(
    model: DynamicsModel,
    cfg,
    clips_n: int,
    per_cell: int,
    world: World = World(),
    context: int = 4,
    horizon: int = 8,
    strip: str | None = None,
):
    g = torch.Generator().manual_seed(7)
    x, actions, cells, which, seen, views = clips(clips_n, context + horizon, g, per_cell, world)
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
    # the view's columns holding a wall: the world's first at view 0, its last at view 2M
    walls_in = torch.zeros(clips_n, context + horizon, GRID, dtype=torch.bool)
    if world.walls_shown:
        walls_in[..., 0] = views == 0
        walls_in[..., -1] = views == 2 * world.camera
    wall_cols = walls_in[:, context:]
    hit, made = ball_search(out, cells[:, context:], which[:, context:], codes, wall_cols)
    if strip:
        # three clips from the last true frame on: the truth over the model's
        last = x[:3, context - 1 : context]
        draw_strip(x[:3, context - 1 :], torch.cat([last, out[:3].float()], dim=1), strip)
    last_cell = cells[:, context - 1 : context].expand(-1, horizon, -1)
    _, stays = ball_search(
        out, last_cell, which[:, context - 1 : context].expand(-1, horizon), codes
    )
    # copy-last-frame's hit: 0 when the ball moves a whole cell a frame, not below that
    copy = x[:, context - 1 : context].expand(-1, horizon, -1, -1, -1)
    copy_hit, _ = ball_search(copy, cells[:, context:], which[:, context:], codes, wall_cols)
    # the ball's last cell carried by the view's move alone (as if it were the texture)
    rode = last_cell.clone()
    rode[..., 1] -= views[:, context:] - views[:, context - 1 : context]
    on = (rode[..., 1] >= 0) & (rode[..., 1] < GRID)
    _, rides = ball_search(
        out, rode.clamp(0, GRID - 1), which[:, context - 1 : context].expand(-1, horizon), codes
    )
    # whole-frame squared error (B, horizon): has the model learned the rest of the frame?
    truth = x[:, context:]
    mse = (out.float() - truth).pow(2).mean((2, 3, 4))
    # the same without the view's outer columns (where a scroll brings in unseen texture)
    inner = (out.float() - truth)[..., 1:-1].pow(2).mean((2, 3, 4))
    copy_mse = (copy - truth).pow(2).mean((2, 3, 4))
    # frames whose ball is in the view (every frame without a camera); for ``stays`` it must
    # also have been in the last true frame
    shown = seen[:, context:]
    kept = shown & seen[:, context - 1 : context]
    scrolled = views[:, context] != views[:, context - 1]
    row = {}
    for h in (1, 2, 4, 8):
        m = shown[:, h - 1]
        n = int(m.sum())
        p = float(hit[m, h - 1].mean()) if n else float("nan")
        row[f"h{h}"] = {
            "hit": round(p, 2),
            "ci": wilson(p, n) if n else None,
            "made": round(float(made[m, h - 1].median()), 2) if n else None,
            "stays": round(float(stays[kept[:, h - 1], h - 1].median()), 2)
            if kept[:, h - 1].any()
            else None,
            "copy_hit": round(float(copy_hit[m, h - 1].mean()), 2) if n else None,
            "mse": round(float(mse[:, h - 1].mean()), 4),
            "copy_mse": round(float(copy_mse[:, h - 1].mean()), 4),
            "mse_inner": round(float(inner[:, h - 1].mean()), 4),
        }
        if world.camera:
            row[f"h{h}"]["n"] = n
            ride = kept[:, h - 1] & on[:, h - 1]
            row[f"h{h}"]["rides"] = (
                round(float(rides[ride, h - 1].median()), 2) if ride.any() else None
            )
    if world.camera:
        for name, part in (("still", ~scrolled), ("scrolled", scrolled)):
            m = shown[:, 0] & part
            n = int(m.sum())
            p = float(hit[m, 0].mean()) if n else float("nan")
            row["h1"][f"hit_{name}"] = [round(p, 2), n, wilson(p, n) if n else None]
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
    p.add_argument(
        "--camera",
        type=int,
        default=0,
        help="M > 0: the view scrolls with the action over a world 2M cells wider than it",
    )
    p.add_argument(
        "--hidden-edges",
        action="store_true",
        help="with --camera: no walls at the world's edges (texture there too)",
    )
    p.add_argument(
        "--still-texture",
        action="store_true",
        help="with --camera: the texture stays still and the view is held nowhere, so only "
        "the ball's move in the view depends on the action",
    )
    p.add_argument(
        "--endless",
        action="store_true",
        help="with --camera: the still-texture world with the texture scrolling with the "
        "view (a world no clip's view reaches the edge of: no walls, stops or side bounces)",
    )
    p.add_argument(
        "--texture",
        type=float,
        default=0.1,
        help="standard deviation of the texture's latent values (0: none)",
    )
    p.add_argument(
        "--strip",
        help="PNG: after training, three evaluation clips, the truth over the model's frames",
    )
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    if args.steps < 1 or args.clips < 1 or min(args.clean_steps, args.camera, args.texture) < 0:
        raise SystemExit(
            f"--steps {args.steps} and --clips {args.clips} must be >= 1, --clean-steps "
            f"{args.clean_steps}, --camera {args.camera} and --texture {args.texture} >= 0"
        )
    if (args.hidden_edges or args.still_texture or args.endless) and not args.camera:
        raise SystemExit(
            "--hidden-edges, --still-texture and --endless need a camera: --camera M, M > 0"
        )
    if args.endless and (args.still_texture or args.hidden_edges):
        raise SystemExit(
            "--endless has no edges and a scrolling texture: not with "
            "--still-texture or --hidden-edges"
        )
    per_cell = round(1 / args.ball_speed) if args.ball_speed > 0 else 0
    if per_cell < 1 or abs(per_cell * args.ball_speed - 1) > 1e-6:
        raise SystemExit(f"--ball-speed {args.ball_speed}: 1 or 1/n for a whole n (0.5, 0.25)")
    world = World(
        camera=args.camera,
        walls=not args.hidden_edges,
        still_texture=args.still_texture,
        texture=args.texture,
        endless=args.endless,
    )
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
        latents, actions, *_ = clips(cfg.train.batch_size, frames, g, per_cell, world)
        step_objective = clean if step <= args.clean_steps else objective
        loss, _ = step_objective(model, {"latents": latents, "actions": actions}, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % max(1, args.steps // 4) == 0 or step == args.steps:
            row = {"step": step, "seconds": round(time.time() - start)}
            row.update(
                evaluate(
                    model.eval(),
                    cfg,
                    args.clips,
                    per_cell,
                    world,
                    strip=args.strip if step == args.steps else None,
                )
            )
            model.train()
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
