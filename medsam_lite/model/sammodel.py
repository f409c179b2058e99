"""The torch model: :class:`SamModel`, the three SAM parts plus what the package needs to know.

Importing this module imports torch; :mod:`.models` (the model table and :func:`load_model`) does not.
"""

from __future__ import annotations

import torch

from ..errors import InputError
from .intensity import IntensityPreset
from .base import ModelBase


class SamModel(ModelBase, torch.nn.Module):
    """A SAM-family model: frozen image encoder, prompt encoder and mask decoder.

    Attributes:
        spec: the :class:`ModelSpec` of the architecture.
        weights_sha256: SHA-256 of the weights' file(s); part of every embedding-store signature.
        checkpoint: path of the checkpoint the weights came from.
        preset: the :class:`~medsam_lite.model.intensity.IntensityPreset` the model was fine-tuned with (read
            from a fine-tuned checkpoint), or ``None``; :class:`~medsam_lite.Predictor` uses it by default.
        weights_version: a counter :meth:`weights_changed` bumps; the compiled runtime and the cached
            encoder hash follow it.
        click_decoder: ``ModuleDict(prompt_encoder=…, mask_decoder=…)`` that answers prompts with points
            or a mask input (LiteMedSAM's published decoder was trained on boxes only), or ``None``:
            the model's own decoder answers every prompt.
    """

    def __init__(self, net: torch.nn.Module, spec: ModelSpec, weights_sha256: str, checkpoint: str,
                 preset: IntensityPreset | None = None):
        super().__init__()
        self.image_encoder = net.image_encoder
        self.prompt_encoder = net.prompt_encoder
        self.mask_decoder = net.mask_decoder
        self.spec = spec
        self.weights_sha256 = weights_sha256
        self.checkpoint = checkpoint
        self.preset = preset
        self.click_decoder: torch.nn.ModuleDict | None = None  # set by load_model (see attach_click_decoder)
        self.runtime = None  # a compiled CPU runtime (medsam_lite.model.backends), or None: torch eager
        self.weights_version = 0  # bumped by weights_changed(); the runtime is rebuilt when it moves on
        self._runtime_version = None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``B×3×S×S`` model inputs → ``B×256×64×64`` float32 image embeddings (on this model's device).

        The package's only call of the image encoder (through a compiled CPU runtime when
        :func:`load_model` chose one); :func:`medsam_lite.model.inference.encode` is the seam around it.
        """
        if self._current_runtime() is not None:
            return self.runtime.encode(images.float().cpu()).to(self.device)
        return self.image_encoder(images.to(self.device))

    def decode(self, embeddings: torch.Tensor, boxes: torch.Tensor | None = None, points: torch.Tensor | None = None,
               point_labels: torch.Tensor | None = None, mask_input: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder: one mask per target (the package's only call of the decoder).

        One batching rule for every model: ``embeddings`` is ``1×C×h×w`` (one image shared by all
        ``N`` targets) or ``N×C×h×w`` (embedding ``i`` pairs with target ``i``, as in a training batch).
        A box-only prompt runs the published decoder exactly as before; a prompt with points or a mask
        input runs :attr:`click_decoder` when the model has one (else the same decoder).

        Args:
            embeddings: ``1×256×64×64`` or ``N×256×64×64`` image embeddings.
            boxes: ``N×4`` XYXY boxes in **model-input** pixels, or ``None``.
            points: ``N×K×2`` XY points in **model-input** pixels, or ``None``.
            point_labels: ``N×K`` (1 foreground, 0 background), with ``points``.
            mask_input: ``N×1×s×s`` low-resolution logits (``s`` = 4 × the embedding side, 256), or ``None``.

        Returns:
            ``(low_res_logits N×1×256×256, iou_predictions N×1)``.
        """
        if points is None and mask_input is None:
            return self._decode_boxes(embeddings, boxes)
        n = int((points if points is not None else boxes).shape[0])
        if embeddings.shape[0] not in (1, n):
            raise InputError(f"decode takes one embedding for all targets or one per target; got "
                             f"{embeddings.shape[0]} embeddings for {n} targets.")
        pe, md = self.prompt_parts(clicks=True)
        runtime = self.compiled_prompts(embeddings.shape[0])
        if runtime is not None:
            from .backends import CacheUnusable
            from .prompt_graph import decode_prompts

            cpu = [None if t is None else t.float().cpu() for t in (boxes, points, point_labels, mask_input)]
            try:
                logits, iou = decode_prompts(runtime, pe, md, embeddings.float().cpu(), *cpu,
                                             weights_version=self.weights_version)
                return logits.to(self.device), iou.to(self.device)
            except CacheUnusable:  # no export cache (read-only home, full disk): the same prompt in torch
                pass
        prompts = [None if t is None else t.to(self.device).float() for t in (boxes, points, point_labels, mask_input)]
        if embeddings.shape[0] > 1 and self.spec.sam_variant is not None:
            parts = [self._run(pe, md, embeddings[i:i + 1], *[None if t is None else t[i:i + 1] for t in prompts])
                     for i in range(n)]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return self._run(pe, md, embeddings, *prompts)

    def compiled_prompts(self, batch: int):
        """The compiled runtime :meth:`decode` runs points / mask-input prompts in for ``batch`` embeddings
        (no gradients, one embedding, a runtime whose decoder is not torch), else ``None`` (torch)."""
        runtime = self._current_runtime() if not torch.is_grad_enabled() and batch == 1 else None
        return runtime if runtime is not None and runtime.decoder_backend != "torch" else None

    def _decode_boxes(self, embeddings: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Box-only prompts through the published decoder (the path every box-only number comes from)."""
        n = int(boxes.shape[0])
        if embeddings.shape[0] not in (1, n):
            raise InputError(f"decode takes one embedding for all boxes or one per box; got {embeddings.shape[0]} "
                             f"embeddings for {n} boxes.")
        if not torch.is_grad_enabled() and embeddings.shape[0] == 1 and self._current_runtime() is not None:
            logits, iou = self.runtime.decode(embeddings.float().cpu(), boxes.float().cpu())
            return logits.to(self.device), iou.to(self.device)
        if embeddings.shape[0] > 1 and self.spec.sam_variant is not None:
            # segment_anything's decoder repeats each image per box: pair them one image at a time
            parts = [self._decode(embeddings[i:i + 1], boxes[i:i + 1]) for i in range(n)]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return self._decode(embeddings, boxes)  # LiteMedSAM's decoder pairs N with N, repeats 1 for N

    def _decode(self, embeddings: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sparse, dense = self.prompt_encoder(points=None, boxes=boxes.to(self.device)[:, None, :].float(), masks=None)
        return self.mask_decoder(
            image_embeddings=embeddings.to(self.device).float(),
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )

    def weights_changed(self) -> None:
        """Say that the weights changed: the compiled runtime is rebuilt from them at the next call.

        :meth:`load_state_dict` and :func:`~medsam_lite.finetune` call it; call it yourself after
        editing weights in place (``with torch.no_grad(): p.mul_(…)``) or loading a part's state
        dict (``model.mask_decoder.load_state_dict(…)``). Nothing is hashed per call: each
        encode/decode only compares :attr:`weights_version` with the runtime's.
        """
        self.weights_version += 1

    def load_state_dict(self, *args, **kwargs):
        """``torch.nn.Module.load_state_dict``, then :meth:`weights_changed`."""
        result = super().load_state_dict(*args, **kwargs)
        self.weights_changed()
        return result

    @staticmethod
    def _run(pe, md, embeddings, boxes, points, point_labels, mask_input):
        """SAM's prompt encoder (points before the box corners; a padding point when there is no box)."""
        sparse, dense = pe(points=None if points is None else (points, point_labels),
                           boxes=None if boxes is None else boxes[:, None, :], masks=mask_input)
        return md(image_embeddings=embeddings.to(dense.device).float(), image_pe=pe.get_dense_pe(),
                  sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False)

    def prompt_parts(self, clicks: bool = False):
        """``(prompt_encoder, mask_decoder)`` that answer box-only prompts (``clicks=False``: the
        published ones) or prompts with points / a mask input (the :attr:`click_decoder`, if any)."""
        if clicks and self.click_decoder is not None:
            return self.click_decoder["prompt_encoder"], self.click_decoder["mask_decoder"]
        return self.prompt_encoder, self.mask_decoder

    def set_runtime(self, runtime) -> None:
        """Use a compiled runtime (or ``None`` for torch eager) for the weights as they are now."""
        self.runtime = runtime
        self._runtime_version = self.weights_version if runtime is not None else None

    def _current_runtime(self):
        """The compiled runtime, rebuilt first if the weights changed since it was exported (an export
        is never trusted across a change: it is keyed by the weights' hash)."""
        if self.runtime is not None and self.weights_version != self._runtime_version:
            from .backends import build_runtime

            enc, pe, md = self.image_encoder, self.prompt_encoder, self.mask_decoder
            self.set_runtime(build_runtime(enc, pe, md, backend=self.runtime.name, precision=self.runtime.precision,
                                           threads=self.runtime.threads))
        return self.runtime

    @property
    def embedding_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of one image embedding (``(256, 64, 64)`` for every model in the table)."""
        return (int(self.prompt_encoder.embed_dim), *(int(v) for v in self.prompt_encoder.image_embedding_size))
