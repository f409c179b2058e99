"""Neighbouring slices encoded in the background: same embeddings, no double work, nothing left running."""

import gc

import numpy as np
import torch

import medsam_lite as ml
from medsam_lite import io, samples
from medsam_lite.model.inference import encode


def test_prefetched_slices_equal_foreground_ones_and_are_not_encoded_twice(model):
    scan = io.read_volume(samples.ct_abdomen_dir() / "case-02.nii.gz")
    vp = ml.VolumePredictor(scan, model, modality="CT", prefetch=1)
    z = vp.n_slices // 2
    vp.embed(z)
    vp.prefetch_around(z)  # z - 1 and z + 1 in the background
    assert vp._prefetcher.wait(timeout=120)
    assert {z - 1, z, z + 1} <= set(vp.embeddings) and vp.encoder_calls == 3
    assert vp._prefetcher.background_calls == 2
    again = vp.embed(z + 1)  # from the cache: no new encoder run
    assert vp.encoder_calls == 3
    direct = encode(model, vp.slice_image(z + 1))
    assert torch.allclose(again.tensor, direct.tensor, rtol=0, atol=1e-5)


def test_a_request_replaces_the_waiting_ones_and_close_stops_the_worker(model):
    scan = io.read_volume(samples.ct_abdomen_dir() / "case-01.nii.gz")
    vp = ml.VolumePredictor(scan, model, modality="CT", prefetch=2)
    vp.prefetch_around(2)
    vp.prefetch_around(7)  # the user moved on: slices around 2 that were still waiting are dropped
    assert vp._prefetcher.wait(timeout=180)
    encoded = set(vp.embeddings)
    assert {5, 6, 8, 9} <= encoded and len(encoded) <= 6  # at most one of 2's neighbours had started
    vp._prefetcher.close()
    vp._prefetcher.request([0, 1])  # after close nothing runs
    assert vp._prefetcher.pending() == [] and not (set(vp.embeddings) - encoded)


def test_the_widget_prefetches_neighbours_of_the_shown_slice(model):
    from medsam_lite.interactive.widgets import BoxPrompter

    scan = io.read_volume(samples.ct_abdomen_dir() / "case-03.nii.gz")
    prompter = BoxPrompter(scan.array, model, modality="CT", slice_index=4, prefetch=1)
    assert prompter._prefetcher.wait(timeout=120)
    assert {3, 4, 5} <= set(prompter._embeddings.keys())
    p = prompter._prefetcher
    foreground = p.encoder_calls - p.background_calls
    prompter.set_slice(5)  # already encoded in the background: no encoder run in the foreground
    assert p.encoder_calls - p.background_calls == foreground
    label = io.read_volume(samples.ct_abdomen_dir() / "case-03_label.nii.gz").array
    box = ml.box_from_mask(label[5] == 5)
    prompter.add_box(box, slice=5)
    assert prompter.masks[prompter.labels[0]][5].any()
    assert np.isfinite(prompter.timings["decode_ms"])


# ---- shared by the tests below (from test_faults2.py)
def _ct():
    return io.read_volume(samples.ct_abdomen_dir() / "case-01.nii.gz")


def test_deleting_a_volume_predictor_stops_its_prefetch(model):
    vp = ml.VolumePredictor(_ct(), model, modality="CT", prefetch=2)
    vp.prefetch_around(vp.n_slices // 2)  # 4 slices queued
    worker = vp._prefetcher
    del vp
    gc.collect()
    worker._thread.join(120)
    assert not worker._thread.is_alive() and worker.background_calls <= 1  # only the slice already started


def test_closing_a_volume_predictor_stops_its_prefetch(model):
    vp = ml.VolumePredictor(_ct(), model, modality="CT", prefetch=2)
    vp.prefetch_around(vp.n_slices // 2)
    vp.close()
    assert vp._prefetcher.background_calls <= 1 and vp._prefetcher.pending() == []


def test_closing_a_box_prompter_stops_its_prefetch(model):
    from medsam_lite.interactive.widgets import BoxPrompter

    prompter = BoxPrompter(_ct().array, model, modality="CT", slice_index=4, prefetch=2)
    worker = prompter._prefetcher
    prompter.close()
    if worker._thread is not None:
        worker._thread.join(120)
    assert worker.background_calls <= 1 and worker.pending() == []
