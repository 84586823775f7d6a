import torch

from tada.fingerprint import weights_fingerprint


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))


def test_equal_weights_equal_fingerprints_and_any_change_shows():
    a, b = _net(0), _net(0)
    assert weights_fingerprint(a) == weights_fingerprint(b)
    assert len(weights_fingerprint(a)) == 16
    with torch.no_grad():
        b[0].weight[0, 0] += 1e-6
    assert weights_fingerprint(a) != weights_fingerprint(b)
    assert weights_fingerprint(a) != weights_fingerprint(_net(1))


def test_bfloat16_weights_hash_and_differ_from_float32():
    a = _net(0)
    half = _net(0).to(torch.bfloat16)
    assert weights_fingerprint(half) != weights_fingerprint(a)
    assert weights_fingerprint(half) == weights_fingerprint(_net(0).to(torch.bfloat16))
