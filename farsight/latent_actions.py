"""How well latent actions agree with the true actions, and labelling a store with them.

Agreement (Genie reports none for its LAM; we do, on held-out episodes):
    nmi        normalized mutual information I(A; Z) / ((H(A) + H(Z)) / 2) (sklearn's default,
               arithmetic normalisation): 0 independent, 1 one-to-one up to renaming
    mi_bits    I(A; Z) in bits (at most log2 |A| and log2 |Z|)
    accuracy   share of pairs whose true action is the most frequent true action of their
               latent code (many-to-one purity: how well Z predicts A)
    usage_entropy   H(Z) / log |Z|
    perplexity      exp H(Z): the effective number of codes in use (1 when collapsed)
    codes_used      share of the |Z| codes that label at least a tenth of their uniform share
                    of the pairs (1 / (10 |Z|)): stray pairs on a dead code do not count
    top_share       share of the pairs given the most frequent code
    collapsed       1 when one code labels at least ``COLLAPSE_SHARE`` of the pairs (the LAM's
                    failure mode: the decoder learns the average change, the code says nothing)
    nmi_chance      NMI of the same labels with the latent codes shuffled (mean over
                    permutations) and its 99th percentile ``nmi_chance_p99``: NMI is biased
                    upwards on finite samples, so this, not 0, is what "no agreement" reads

Computed from the contingency table with numpy (no sklearn dependency).

Dimension legend: N frame pairs, A true actions, K latent codes, H W frame size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from farsight.data.store import EpisodeStore
from farsight.models.autoencoder import frames_to_images

COLLAPSE_SHARE = 0.95
"""A LAM whose most frequent code labels this share of the pairs is reported as collapsed."""


def code_usage_stats(counts: np.ndarray) -> dict[str, float]:
    """Usage of the latent codes from their (K,) histogram: entropy / log K, perplexity, share
    of codes in use, the top code's share and the collapse flag. Needs no true actions."""
    counts = np.asarray(counts, np.float64)
    k, n = len(counts), counts.sum()
    if n == 0:
        return {
            "usage_entropy": 0.0,
            "perplexity": 0.0,
            "codes_used": 0.0,
            "top_share": 0.0,
            "collapsed": 0.0,
        }
    p = counts / n
    h = _entropy(p)
    return {
        "usage_entropy": float(h / np.log(k)) if k > 1 else 0.0,
        "perplexity": float(np.exp(h)),
        "codes_used": float((p >= 0.1 / k).mean()),
        "top_share": float(p.max()),
        "collapsed": float(p.max() >= COLLAPSE_SHARE),
    }


def usage_line(m: dict) -> str:
    """One line on code usage, naming a collapse plainly."""
    line = (
        f"usage {m['usage_entropy']:.3f}  perplexity {m['perplexity']:.2f}  "
        f"codes used {m['codes_used']:.2f}"
    )
    if m.get("collapsed"):
        line += f"  COLLAPSED: one latent action labels {m['top_share']:.0%} of the pairs"
    return line


def contingency(true: np.ndarray, latent: np.ndarray, num_true: int, num_latent: int):
    """(A, K) counts of (true action, latent code) pairs."""
    table = np.zeros((num_true, num_latent), dtype=np.int64)
    np.add.at(table, (np.asarray(true, np.int64), np.asarray(latent, np.int64)), 1)
    return table


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def agreement(table: np.ndarray) -> dict[str, float]:
    """NMI, MI (bits), purity accuracy and entropies from an (A, K) contingency table."""
    n = table.sum()
    if n == 0:
        return {"nmi": 0.0, "mi_bits": 0.0, "accuracy": 0.0, "pairs": 0}
    p = table / n
    pa, pz = p.sum(1), p.sum(0)
    ha, hz = _entropy(pa), _entropy(pz)
    mi = ha + hz - _entropy(p.ravel())
    mi = max(mi, 0.0)  # float round-off
    denom = 0.5 * (ha + hz)
    return {
        "nmi": float(mi / denom) if denom > 0 else 1.0,
        "mi_bits": float(mi / np.log(2)),
        "accuracy": float(table.max(0).sum() / n),
        "true_entropy_bits": float(ha / np.log(2)),
        "latent_entropy_bits": float(hz / np.log(2)),
        **code_usage_stats(table.sum(0)),
        "pairs": int(n),
    }


def chance_nmi(table: np.ndarray, permutations: int = 200, seed: int = 0) -> dict[str, float]:
    """NMI expected of independent labels with the same marginals as the (A, K) ``table``
    (a permutation null): mean and 99th percentile over ``permutations`` shuffles."""
    table = np.asarray(table, np.int64)
    a, k = table.shape
    true = np.repeat(np.arange(a), table.sum(1))
    latent = np.concatenate([np.repeat(np.arange(k), row) for row in table])
    rng = np.random.default_rng(seed)
    null = np.array(
        [
            agreement(contingency(true, rng.permutation(latent), a, k))["nmi"]
            for _ in range(permutations)
        ]
    )
    return {"nmi_chance": float(null.mean()), "nmi_chance_p99": float(np.percentile(null, 99))}


def normalized_mutual_information(true: np.ndarray, latent: np.ndarray) -> float:
    """NMI of two label arrays (arithmetic normalisation, as sklearn's default)."""
    true, latent = np.asarray(true, np.int64), np.asarray(latent, np.int64)
    table = contingency(true, latent, int(true.max(initial=0)) + 1, int(latent.max(initial=0)) + 1)
    return agreement(table)["nmi"]


@torch.no_grad()
def infer_episode(lam, frames: np.ndarray, device, batch: int = 256) -> np.ndarray:
    """Latent actions of one episode: uint8 (T, H, W, 3) -> (T,) int64, z_t = LAM(x_t, x_{t+1});
    the last entry is padding (0), as the store's last action is."""
    out = np.zeros(len(frames), dtype=np.int64)
    for i in range(0, len(frames) - 1, batch):
        j = min(i + batch, len(frames) - 1)
        x = frames_to_images(torch.from_numpy(frames[i : j + 1])).to(device)
        out[i:j] = lam.infer(x[:-1], x[1:]).cpu().numpy()
    return out


def label_store(
    lam, store: EpisodeStore, episodes: Sequence[int] | None = None, device="cpu"
) -> dict[int, np.ndarray]:
    """{episode: (T,) latent actions} for ``episodes`` (default all)."""
    lam = lam.to(device).eval()
    episodes = range(store.num_episodes) if episodes is None else episodes
    return {
        int(e): infer_episode(lam, store.read(int(e), keys=("frames",))["frames"], device)
        for e in episodes
    }


def split_latents(
    lam, store: EpisodeStore, split: str = "test", device="cpu", max_pairs: int = 0
) -> tuple[np.ndarray, np.ndarray | None]:
    """The latent actions of a split's pairs (x_t, x_{t+1}) (within episodes; ``max_pairs``
    > 0 stops early) and the store's true actions of the same pairs (None if it has none)."""
    episodes = store.split_episodes(split) or list(range(store.num_episodes))
    keys = ("frames", "actions") if "actions" in store.arrays else ("frames",)
    trues, latents = [], []
    count = 0
    for e in episodes:
        arrays = store.read(int(e), keys=keys)
        z = infer_episode(lam.to(device).eval(), arrays["frames"], device)
        if "actions" in arrays:
            trues.append(arrays["actions"][:-1])
        latents.append(z[:-1])
        count += len(z) - 1
        if max_pairs and count >= max_pairs:
            break
    return np.concatenate(latents), (np.concatenate(trues) if trues else None)


def latent_usage(
    lam, store: EpisodeStore, split: str = "test", device="cpu", max_pairs: int = 0
) -> dict:
    """Code usage (``code_usage_stats``) of the LAM on a split: works without true actions."""
    latent, _ = split_latents(lam, store, split, device, max_pairs)
    counts = np.bincount(latent, minlength=lam.num_codes)
    return {"split": split, **code_usage_stats(counts), "pairs": int(len(latent))}


def latent_action_agreement(
    lam, store: EpisodeStore, split: str = "test", device="cpu", max_pairs: int = 0
) -> dict:
    """Agreement of the LAM's actions with the store's true actions on a split's episodes
    (all pairs (x_t, x_{t+1}) within each episode; ``max_pairs`` > 0 stops early)."""
    if "actions" not in store.arrays:
        raise ValueError(f"store {store.path} has no true actions to compare with")
    latent, true = split_latents(lam, store, split, device, max_pairs)
    num_true = len(store.meta.get("env", {}).get("action_meanings") or []) or None
    num_true = num_true or int(true.max()) + 1
    table = contingency(true, latent, num_true, lam.num_codes)
    return {"split": split, **agreement(table), **chance_nmi(table), "contingency": table.tolist()}
