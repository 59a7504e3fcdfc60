import keras
import pytest
import tensorflow as tf

from tf_transformer.config import TrainConfig
from tf_transformer.training.fit import build_optimizer, compile_for_training, resolve_precision
from tf_transformer.training.schedules import InverseSquareRootSchedule


def test_optimizer_follows_the_config():
    optimizer = build_optimizer(
        TrainConfig(
            optimizer="adamw",
            weight_decay=0.01,
            clip_norm=0.5,
            gradient_accumulation_steps=4,
            peak_learning_rate=5e-4,
            warmup_steps=10,
        )
    )
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert (optimizer.beta_2, optimizer.weight_decay, optimizer.global_clipnorm) == (
        0.98,
        0.01,
        0.5,
    )
    assert optimizer.gradient_accumulation_steps == 4
    assert isinstance(optimizer._learning_rate, InverseSquareRootSchedule)
    # The schedule counts updates of 4 batches: the peak at update 9 is batch 4 * 9 + 3.
    assert float(optimizer._learning_rate(39)) == pytest.approx(5e-4)
    assert float(optimizer._learning_rate(9)) == pytest.approx(5e-4 * 3 / 10)


def test_auto_precision_is_float32_on_cpu():
    assert resolve_precision("auto", tf.distribute.get_strategy()) == "float32"
    assert resolve_precision("mixed_bfloat16", tf.distribute.get_strategy()) == "mixed_bfloat16"


def test_mixed_float16_gets_loss_scaling():
    keras.config.set_dtype_policy("mixed_float16")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    compile_for_training(model, TrainConfig(jit_compile=False))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
