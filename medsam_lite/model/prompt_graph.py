"""Points and mask inputs on the compiled CPU backends: SAM's ``SamOnnxModel`` way, one graph per decoder.

Box-only prompts keep the box graph of :mod:`medsam_lite.model.backends` (``decoder``); a prompt with
points or a mask input runs the ``prompts`` graph exported here, cached beside it (keyed by the
prompt encoder's and mask decoder's weights, e.g. the shipped click decoder's). Inputs are SAM's:
box corners become two points labelled 2 and 3 after the clicks; without a box a padding point
labelled -1 is appended; ``has_mask_input`` switches the mask input on or off.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch

from .backends import DecoderGraph, export_cached
from .sessions import GraphSession, as_array, prompt_arrays
from .hashing import state_sha256


class PromptGraph(DecoderGraph):
    """Prompt encoder + mask decoder for points, boxes and a mask input, for ONE image embedding.

    Inputs ``embedding 1×C×h×w``; ``point_coords N×P×2`` model-input pixels and ``point_labels N×P``
    float (1 foreground, 0 background, 2/3 a box's top-left/bottom-right corner, -1 padding);
    ``mask_input N×1×4h×4w`` low-res logits and ``has_mask_input`` ``(1,)`` (1.0 use it, 0.0 ignore
    it). Outputs ``(logits N×1×4h×4w, iou N×1)``: mask token 0, as the torch decoder without multimask.
    """

    def forward(self, embedding, point_coords, point_labels, mask_input, has_mask_input):
        pe, md = self.prompt_encoder, self.mask_decoder
        sparse = pe.pe_layer.forward_with_coords(point_coords + 0.5, pe.input_image_size)
        labels = point_labels.unsqueeze(-1)
        sparse = sparse * (labels != -1) + pe.not_a_point_embed.weight * (labels == -1)
        for i in range(pe.num_point_embeddings):
            sparse = sparse + pe.point_embeddings[i].weight * (labels == i)
        flag = has_mask_input.reshape(1, 1, 1, 1)
        dense = flag * pe.mask_downscaling(mask_input) + (1 - flag) * pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
        n = sparse.shape[0]
        output_tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(n, -1, -1), sparse], dim=1)
        src = embedding.expand(n, -1, -1, -1) + dense
        pos_src = self.image_pe.expand(n, -1, -1, -1)
        c, h, w = src.shape[1], src.shape[2], src.shape[3]
        hs, src = md.transformer(src, pos_src, tokens)
        upscaled = md.output_upscaling(src.transpose(1, 2).reshape(n, c, h, w))
        hyper = md.output_hypernetworks_mlps[0](hs[:, 1, :])
        uc, uh, uw = upscaled.shape[1], upscaled.shape[2], upscaled.shape[3]
        logits = torch.bmm(hyper.unsqueeze(1), upscaled.reshape(n, uc, uh * uw)).reshape(n, 1, uh, uw)
        return logits, md.iou_prediction_head(hs[:, 0, :])[:, :1]

    def export_args(self):
        """``(example inputs, input names, output names, dynamic axes)`` for ``torch.onnx.export``."""
        emb = self.image_pe
        h, w = emb.shape[-2:]
        args = (torch.zeros_like(emb), torch.tensor([[[30.0, 40.0], [10.0, 10.0], [100.0, 100.0]]] * 2),
                torch.tensor([[1.0, 2.0, 3.0], [0.0, 2.0, 3.0]]), torch.zeros(2, 1, 4 * h, 4 * w), torch.ones(1))
        names = ["embedding", "point_coords", "point_labels", "mask_input", "has_mask_input"]
        dynamic = {"point_coords": {0: "n", 1: "p"}, "point_labels": {0: "n", 1: "p"}, "mask_input": {0: "n"},
                   "low_res_logits": {0: "n"}, "iou": {0: "n"}}
        return args, names, ["low_res_logits", "iou"], dynamic


_SESSIONS: dict = {}  # (backend, precision, threads, cache folder, weights hash) → loaded prompts graph
_HASHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # mask decoder → ((pe id, version), hash)


def prompt_weights_sha256(prompt_encoder, mask_decoder, weights_version: int) -> str:
    """SHA-256 of the prompt encoder's and mask decoder's tensors, computed once per
    ``weights_version`` (:class:`~medsam_lite.model.models.SamModel`) of the model they belong to (as the
    encoder hash of :func:`medsam_lite.data.store.encoder_sha256`): nothing is hashed per click."""
    key = (id(prompt_encoder), int(weights_version))
    hit = _HASHES.get(mask_decoder)
    if hit is None or hit[0] != key:
        hit = _HASHES[mask_decoder] = (key, state_sha256(prompt_encoder, mask_decoder))
    return hit[1]


@torch.no_grad()
def decode_prompts(runtime, prompt_encoder, mask_decoder, embedding, boxes=None, points=None, point_labels=None,
                   mask_input=None, weights_version: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Run points / mask-input prompts for ONE image in ``runtime``'s backend (a compiled
    :class:`~medsam_lite.model.backends.CompiledRuntime`).

    Args:
        runtime: the model's runtime (its backend, precision, threads and cache folder are used).
        prompt_encoder, mask_decoder: the torch parts to run (e.g. the shipped click decoder),
            exported once per weights.
        embedding: ``1×256×64×64`` float32.
        boxes: ``N×4`` XYXY model-input pixels, or ``None``.
        points, point_labels: ``N×K×2`` XY model-input pixels and ``N×K`` (1 fg, 0 bg), or ``None``.
        mask_input: ``N×1×256×256`` low-res logits, or ``None``.
        weights_version: the owning model's ``weights_version`` (:class:`~medsam_lite.model.models.SamModel`)
            (the export is looked up by the weights' hash, recomputed only when it moves on).

    Returns:
        ``(low_res_logits N×1×256×256, iou N×1)`` float32 on the CPU.
    """
    n = int((points if points is not None else boxes).shape[0])
    weights = prompt_weights_sha256(prompt_encoder, mask_decoder, weights_version)
    settings = runtime._settings
    backend = runtime.decoder_backend  # the decoder's backend (``auto`` may pick another for the encoder)
    key = (backend, runtime.precision, runtime.threads, str(settings["cache_dir"]), weights)
    if key not in _SESSIONS:
        def make():
            import copy

            return PromptGraph(copy.deepcopy(prompt_encoder), copy.deepcopy(mask_decoder)).cpu().float().eval()

        path = export_cached("prompts", make, weights, backend, settings["cache_dir"],
                              settings["input_size"], settings["progress"])
        _SESSIONS[key] = GraphSession(backend, path, runtime.precision, runtime.threads)
    arrays = prompt_arrays(boxes, points, point_labels, mask_input, n, tuple(prompt_encoder.mask_input_size))
    logits, iou = _SESSIONS[key].run(as_array(embedding, "embedding (1×256×64×64)", 4), *arrays)
    return torch.from_numpy(logits), torch.from_numpy(iou)
