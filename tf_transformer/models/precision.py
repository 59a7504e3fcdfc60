"""Serving precision: exports and saved models compute in float32 whatever the training
policy (mixed_float16 / mixed_bfloat16 are for accelerators, slow and lossy on CPUs)."""

from __future__ import annotations

import keras
from keras import ops


def float32_copy(model: keras.Model) -> keras.Model:
    """`model` rebuilt from its config under the float32 dtype policy, with its weights
    cast to float32; `model` itself when it already computes in float32.

    The original is left unchanged (training may go on with it). Layers take their
    policy when they are constructed, so changing `dtype_policy` afterwards would not
    reach them: the copy is constructed under float32 from scratch.

    Raises:
        ValueError: `model` is not built (it has no weights to copy).
    """
    if not model.built:
        raise ValueError(f"{model.name} has no weights yet: build or train it before copying")
    if model.compute_dtype == "float32" and all(
        variable.dtype == "float32" for variable in model.weights if _is_float(variable)
    ):
        return model
    config = {**model.get_config(), "dtype": "float32"}
    previous_policy = keras.config.dtype_policy()
    # Sublayers that do not receive the model's policy take the global one.
    keras.config.set_dtype_policy("float32")
    try:
        copy = type(model).from_config(config)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    build_config = model.get_build_config()
    if build_config:
        copy.build_from_config(build_config)
    else:
        copy.build()
    target_paths = [variable.path for variable in copy.weights]
    source_paths = [variable.path for variable in model.weights]
    if target_paths != source_paths:
        raise ValueError(
            f"the float32 rebuild of {model.name} has other weights than the model: "
            f"{sorted(set(target_paths) ^ set(source_paths))[:5]}"
        )
    for target, source in zip(copy.weights, model.weights, strict=True):
        target.assign(ops.cast(source, target.dtype))
    return copy


def _is_float(variable) -> bool:
    return "float" in str(variable.dtype)
