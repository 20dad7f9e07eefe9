"""The pair encoder F of CLIP4IDC (PAPER.md §2): one CLIP ViT that looks at a before/after pair.

CLIP's vision transformer is split in two. The first `intra_layers` blocks run on each image
alone (shared weights), so each image is first understood by itself, as CLIP was trained to do.
Then the two token sequences are marked as *before* and *after*, concatenated, given a joint
positional embedding, and the remaining (*inter*) blocks let every token of one image attend to
every token of the other: this is where the change is found. `ln_post` and `proj` are applied to
all 2T tokens, which the captioner consumes; retrieval uses the mean of the two CLS outputs.

With `joint=False` (this project's CLIP-FT baseline, PAPER.md §1) every block runs on each image
alone and the two projected token sequences are simply concatenated: no new parameters.

The wrapped `visual` is CLIP's own module (not a copy), so its weights are shared with the CLIP
model it came from.
"""
from __future__ import annotations

import torch
from open_clip.transformer import VisionTransformer
from torch import nn
from torch.utils.checkpoint import checkpoint


def _check_supported(visual: nn.Module) -> None:
    """Refuse open_clip vision towers whose token stream this encoder would silently misuse."""
    if not isinstance(visual, VisionTransformer):
        raise TypeError(f"PairEncoder needs an open_clip VisionTransformer, got {type(visual).__name__} "
                        f"(ResNet and timm towers have no token sequence to split into intra/inter layers)")
    problems = []
    if visual.attn_pool is not None:
        problems.append("attentional pooling (attn_pool)")
    if visual.final_ln_after_pool:
        problems.append("final_ln_after_pool (ln_post must apply to every token)")
    if not isinstance(visual.patch_dropout, nn.Identity):
        problems.append("patch dropout (it drops tokens, so the pair would not have 2T tokens)")
    if visual.pool_type != "tok":
        problems.append(f"pool_type={visual.pool_type!r} (the pair vector reads the CLS tokens)")
    if visual.proj is None:
        problems.append("no output projection (proj is None)")
    if problems:
        raise ValueError("PairEncoder does not support this vision tower: " + "; ".join(problems))


class PairEncoder(nn.Module):
    def __init__(self, visual: VisionTransformer, intra_layers: int, joint: bool = True):
        super().__init__()
        _check_supported(visual)
        self.visual = visual
        self.joint = joint
        n_layers = len(visual.transformer.resblocks)
        width = visual.positional_embedding.shape[1]
        # Tokens per image = patches + CLS, read from CLIP's positional embedding (50 for B/32 at
        # 224 px; the authors hard-code 50, which breaks at any other size).
        self.tokens_per_image = visual.positional_embedding.shape[0]
        self.embed_dim = visual.proj.shape[1]

        if not joint:
            # CLIP-FT: every layer sees one image; "intra" covers the whole tower.
            self.intra_layers = n_layers
            return
        if not 0 < intra_layers < n_layers:
            raise ValueError(f"intra_layers must be between 1 and {n_layers - 1} for a {n_layers}-layer "
                             f"vision transformer (at least one intra and one inter layer), got {intra_layers}")
        self.intra_layers = intra_layers
        # New parameters, initialised like CLIP's own embeddings (width**-0.5 · N(0, 1)), as in the
        # authors' code (bef_embedding, aft_embedding, joint_positional_embedding).
        scale = width ** -0.5
        self.before_embedding = nn.Parameter(scale * torch.randn(width))
        self.after_embedding = nn.Parameter(scale * torch.randn(width))
        self.joint_positional_embedding = nn.Parameter(scale * torch.randn(2 * self.tokens_per_image, width))
        # Same LayerNorm class and eps as CLIP's ln_post (open_clip may use an fp32-casting variant);
        # a fresh nn.LayerNorm-style module starts at weight 1, bias 0.
        self.ln_mid = type(visual.ln_post)(width, eps=visual.ln_post.eps)

    def _blocks(self, x: torch.Tensor, blocks) -> torch.Tensor:
        """Run CLIP resblocks on [N, L, width] tokens, whatever their batch layout."""
        transformer = self.visual.transformer
        if not transformer.batch_first:  # older open_clip layouts are sequence-first
            x = x.transpose(0, 1)
        for block in blocks:
            if transformer.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        if not transformer.batch_first:
            x = x.transpose(0, 1)
        return x

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] × 2 → pair tokens [B, 2T, embed_dim] (before's T tokens, then after's)."""
        if before.shape != after.shape:
            raise ValueError(f"before {tuple(before.shape)} and after {tuple(after.shape)} differ in shape")
        if tuple(before.shape[-2:]) != tuple(self.visual.image_size):
            raise ValueError(f"images are {tuple(before.shape[-2:])}, the vision tower expects "
                             f"{tuple(self.visual.image_size)}")
        batch = before.shape[0]
        blocks = self.visual.transformer.resblocks
        # Stem (patch conv, CLS, CLIP pos-emb, ln_pre) and intra layers: both images in one batch,
        # each image attending only to itself.
        x = self.visual._embeds(torch.cat([before, after]))
        x = self._blocks(x, blocks[:self.intra_layers])
        x_before, x_after = x[:batch], x[batch:]
        if self.joint:
            # Mark which image a token comes from, then let the inter layers compare the two.
            x = torch.cat([x_before + self.before_embedding.to(x.dtype),
                           x_after + self.after_embedding.to(x.dtype)], dim=1)
            x = x + self.joint_positional_embedding.to(x.dtype)
            x = self.ln_mid(x)
            x = self._blocks(x, blocks[self.intra_layers:])
        else:
            x = torch.cat([x_before, x_after], dim=1)
        # Every token is projected (not only CLS): the captioner attends to all of them.
        return self.visual.ln_post(x) @ self.visual.proj

    def pair_vector(self, tokens: torch.Tensor) -> torch.Tensor:
        """Retrieval feature of a pair: mean of the before and after CLS outputs → [B, embed_dim]."""
        return (tokens[:, 0] + tokens[:, self.tokens_per_image]) / 2
