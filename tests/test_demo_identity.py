"""The demo pack's identity net: it tells rendered people apart, ignores what edits and motion change, and makes
TL-ID drop when the person flickers. Judged on renders from seeds the training never used."""

import numpy as np
import pytest
import torch

from tcve.demo import demo_path
from tcve.demo.classifier import frames_to_image
from tcve.demo.faces import animate_clip, render_face, sample_attributes
from tcve.demo.train_identity import IDENTITY_FIELDS, identity_renders, separation
from tcve.identity import SmallIdentityNet, identity_metrics, load_identity_net

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def net():
    model = load_identity_net(demo_path("demo-identity"))
    assert isinstance(model, SmallIdentityNet)
    return model


def test_same_identity_far_closer_than_different(net):
    frames, labels = identity_renders(40, 4, seed=777)   # 40 new people, 4 renders each (pose, expression, edits)
    stats = separation(net, frames_to_image(frames), labels)
    assert stats["same_cos"] - stats["diff_cos"] > 0.5, stats
    assert stats["verification_acc"] > 0.9, stats


def test_edits_keep_the_identity(net):
    rng = np.random.default_rng(778)
    people = [sample_attributes(rng).replace(eyeglasses=False, beard=False) for _ in range(12)]
    plain = frames_to_image(np.stack([render_face(p, 64) for p in people]))
    glasses = frames_to_image(np.stack([render_face(p.replace(eyeglasses=True), 64) for p in people]))
    with torch.no_grad():
        a, b = net(plain), net(glasses)
    same = (a * b).sum(1)
    others = (a @ b.T)[~torch.eye(12, dtype=torch.bool)]
    assert same.mean() - others.mean() > 0.4, (same.mean(), others.mean())


def test_tl_id_drops_when_the_person_flickers(net):
    rng = np.random.default_rng(779)
    clip, attrs = animate_clip(8, 25.0, 64, rng)
    source = frames_to_image(clip)
    stranger = sample_attributes(rng)
    swapped = [a.replace(**{k: getattr(stranger, k) for k in IDENTITY_FIELDS}) if t % 2 else a
               for t, a in enumerate(attrs)]
    flicker = frames_to_image(np.stack([render_face(a, 64) for a in swapped]))
    same = identity_metrics(net, source, source)
    assert same.tl_id == pytest.approx(1.0) and same.id_sim == pytest.approx(1.0, abs=1e-5)
    flickered = identity_metrics(net, flicker, source)
    assert flickered.tl_id < 0.8 and flickered.id_sim < 0.9, flickered
