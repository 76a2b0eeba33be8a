"""Run under torchrun: every rank lists the clips it is given in one epoch; rank 0 saves all."""

import json
import sys

import torch.distributed as dist

from farsight.data.loader import ClipDataset, make_loader
from farsight.data.store import EpisodeStore

dist.init_process_group("gloo")
store_path, out = sys.argv[1], sys.argv[2]
ds = ClipDataset(EpisodeStore(store_path), clip_len=4, split="all")
loader = make_loader(ds, batch_size=1, workers=0, seed=3, infinite=False)
mine = [(int(b["episode"]), int(b["start"])) for b in loader]
everyone = [None] * dist.get_world_size()
dist.all_gather_object(everyone, {"rank": dist.get_rank(), "clips": mine, "total": len(ds)})
if dist.get_rank() == 0:
    with open(out, "w") as f:
        json.dump(everyone, f)
dist.destroy_process_group()
