"""LightGCN (He et al., SIGIR 2020) on the playlist-track graph, with PyTorch Geometric's LGConv.

    model = LightGCN(num_playlists=P, num_tracks=T, dim=64, layers=2)
    pos, neg, reg = model(adj, playlists, pos_tracks, neg_tracks)   # one BPR step (what DDP wraps)
    final, foldin = model.embeddings(adj, track_degree)             # (N, d), (T, d): export, validation

The layer-0 table is the only parameter and the only state that grows with the data. Outside this
class it is reached through `table()` and `load_table()` only (best-epoch weights, digests).
A row-wise sharded table (TorchRec-style, for a catalogue too big for one device) would still
touch more than this class, because every rank propagates the whole graph:
  - propagation: x_0 must be whole on every rank for Â x_0, so each step all-gathers the table
    (or the adjacency is partitioned too, a different trainer);
  - gradients: DDP all-reduces a dense gradient of the whole table; a sharded table needs
    TorchRec's DistributedModelParallel or FSDP instead of DDP in train/main.py;
  - checkpoints: rank 0 saves the whole state dict (musicmap/train/checkpoint.py); shards need
    torch.distributed.checkpoint, each rank writing its rows;
  - export: musicmap/train/export.py writes whole .npy tables from rank 0; shards would gather first or
    write row ranges.
At the MPD's size (1M playlists + ~600K kept tracks, x 64 floats: 0.4 GB, 1.2 GB with Adam's
moments) one device holds the table, so nothing is sharded today.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import LGConv

from musicmap.train.foldin import foldin_vectors


class SymmetricSpMM(torch.autograd.Function):
    """Â @ X for a symmetric sparse Â. The gradient of Â X is Âᵀ G = Â G, so the backward is one
    more sparse product with the same CSR matrix (torch's generic sparse backward transposes Â
    at every step: 4-5x slower on CPU, see bench/BENCHMARKS.md)."""

    @staticmethod
    def forward(ctx, adj: Tensor, x: Tensor) -> Tensor:
        ctx.adj = adj
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, torch.sparse.mm(ctx.adj, grad)


class SymLGConv(LGConv):
    """LGConv over an already normalised, symmetric torch.sparse adjacency Â (normalize=False):
    out = Â x.

    Shapes: x (N, d), adj (N, N) sparse CSR -> (N, d)."""

    def __init__(self):
        super().__init__(normalize=False)

    def message_and_aggregate(self, adj_t: Tensor, x: Tensor) -> Tensor:
        if adj_t.dtype != x.dtype:  # bf16 propagation: the matrix follows the features
            adj_t = adj_t.to(x.dtype)
        return SymmetricSpMM.apply(adj_t, x)


class LightGCN(nn.Module):
    """Embeddings of P playlists and T tracks (nodes 0..P-1, P..P+T-1) propagated by `layers`
    LGConv layers; the final embedding is the mean of the layer outputs x_0..x_L (weights
    1/(L+1)). Scores are dot products of final embeddings.

    Args:
        num_playlists, num_tracks: node counts P and T.
        dim: embedding size d.
        layers: number of propagation layers L.
        init_std: std of a normal initialisation of x_0; None = Xavier uniform (std
            sqrt(2 / (N + d)), as PyG's LightGCN): small enough that the first steps learn.
    """

    def __init__(self, num_playlists: int, num_tracks: int, dim: int = 64, layers: int = 2,
                 init_std: float | None = 0.0035):
        super().__init__()
        self.num_playlists, self.num_tracks, self.layers = num_playlists, num_tracks, layers
        self.embedding = nn.Embedding(num_playlists + num_tracks, dim)
        if init_std is None:
            nn.init.xavier_uniform_(self.embedding.weight)
        else:
            nn.init.normal_(self.embedding.weight, std=init_std)
        self.convs = nn.ModuleList(SymLGConv() for _ in range(layers))

    def layer_outputs(self, adj: Tensor, dtype: torch.dtype | None = None) -> list[Tensor]:
        """[x_0, x_1, ..., x_L], each (N, d); x_k = Â x_{k-1} (computed in `dtype` if given)."""
        x = self.embedding.weight
        xs = [x]
        h = x if dtype is None else x.to(dtype)
        for conv in self.convs:
            h = conv(h, adj)
            xs.append(h if dtype is None else h.float())
        return xs

    def forward(self, adj: Tensor, playlists: Tensor, pos: Tensor, neg: Tensor,
                dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """One BPR step: the scores of a batch from the propagated embeddings.

        playlists, pos: (B,) playlist and positive track ids; neg: (B, n) negative track ids.
        Returns pos_scores (B,), neg_scores (B, n) and the L2 term 1/2 (|x0_u|² + |x0_i|² + |x0_j|²)
        of the batch's layer-0 embeddings (summed over the batch)."""
        P = self.num_playlists
        xs = self.layer_outputs(adj, dtype)

        def final(idx: Tensor) -> Tensor:  # mean of the layer outputs, for the batch's rows only
            return torch.stack([x[idx] for x in xs]).mean(0)
        u = final(playlists)
        pos_scores = (u * final(P + pos)).sum(-1)
        neg_scores = torch.einsum("bd,bnd->bn", u, final(P + neg))
        x0 = self.embedding.weight
        reg = 0.5 * (x0[playlists].pow(2).sum() + x0[P + pos].pow(2).sum() + x0[P + neg].pow(2).sum())
        return pos_scores, neg_scores, reg

    @torch.no_grad()
    def embeddings(self, adj: Tensor, track_degree: Tensor) -> tuple[Tensor, Tensor]:
        """final (N, d), the mean of x_0..x_L, and the fold-in vectors (T, d) of the tracks for
        playlists outside the graph (foldin_vectors; track_degree (T,) as in Â)."""
        xs = self.layer_outputs(adj)
        return torch.stack(xs).mean(0), foldin_vectors(xs, track_degree, self.num_playlists)

    def table(self) -> Tensor:
        """A CPU copy of the layer-0 table (N, d)."""
        return self.embedding.weight.detach().cpu().clone()

    @torch.no_grad()
    def load_table(self, weights: Tensor) -> None:
        self.embedding.weight.copy_(weights.to(self.embedding.weight.device))


def bpr_loss(pos_scores: Tensor, neg_scores: Tensor, reg: Tensor, l2: float) -> Tensor:
    """Bayesian Personalised Ranking: mean over (positive, negative) pairs of -log σ(s⁺ - s⁻),
    plus l2 * reg / B as in the LightGCN paper."""
    b = pos_scores.shape[0]
    return F.softplus(neg_scores - pos_scores[:, None]).mean() + l2 * reg / b
