import pytest
import tensorflow as tf

from tf_transformer.training import strategy as strategy_lib


class ResolverCalled(Exception):
    pass


@pytest.fixture
def recorded_tpu_address(monkeypatch):
    """Records the address `select_strategy` gives TPUClusterResolver (and stops there)."""
    addresses = []

    def resolver(tpu=None, **kwargs):
        addresses.append(tpu)
        raise ResolverCalled

    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", resolver)
    for name in ("TPU_NAME", "COLAB_TPU_ADDR", "TF_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return addresses


def test_an_attached_tpu_without_an_address_is_local(monkeypatch, recorded_tpu_address):
    devices = tf.config.list_physical_devices
    monkeypatch.setattr(
        tf.config,
        "list_physical_devices",
        lambda kind=None: ["/physical_device:TPU:0"] if kind == "TPU" else devices(kind),
    )
    with pytest.raises(ResolverCalled):
        strategy_lib.select_strategy("auto")
    assert recorded_tpu_address == ["local"]


def test_a_configured_tpu_name_is_left_to_the_resolver(monkeypatch, recorded_tpu_address):
    monkeypatch.setenv("TPU_NAME", "my-tpu")
    with pytest.raises(ResolverCalled):
        strategy_lib.select_strategy("tpu")
    assert recorded_tpu_address == [""]
