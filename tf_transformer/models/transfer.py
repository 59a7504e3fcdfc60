"""Starting a model from a pretrained one: weights copied layer by layer, every shape
checked, so that a mismatch names the layer and both shapes instead of failing deep in
Keras (or, worse, loading by position into the wrong layers)."""

from __future__ import annotations

from collections.abc import Sequence

import keras


def _weights_by_name(layer: keras.layers.Layer) -> dict[str, keras.Variable]:
    """The layer's variables by their path inside the layer (e.g. "embedding/embeddings")."""
    prefix = f"{layer.path}/"
    return {variable.path.removeprefix(prefix): variable for variable in layer.weights}


def copy_layer_weights(
    target: Sequence[tuple[str, keras.layers.Layer]],
    source: Sequence[tuple[str, keras.layers.Layer]],
    source_name: str,
) -> int:
    """Copies each named layer of `source` into the layer of `target` with that name
    (both lists of (name, built layer)); returns the number of values copied.

    Raises:
        ValueError: a target layer or weight has no counterpart in `source`, or its shape
            differs; the message names the layer, the weight and both shapes.
    """
    source_layers = dict(source)
    assignments = []
    for name, layer in target:
        if name not in source_layers:
            raise ValueError(
                f"{source_name} has no layer {name!r} to initialize this model's {name} from "
                f"(it has {', '.join(source_layers)})"
            )
        source_weights = _weights_by_name(source_layers[name])
        for weight_name, variable in _weights_by_name(layer).items():
            if weight_name not in source_weights:
                raise ValueError(f"{source_name}: layer {name} has no weight {weight_name}")
            value = source_weights[weight_name]
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"Cannot initialize layer {name} from {source_name}: weight {weight_name} "
                    f"has shape {tuple(value.shape)} there and {tuple(variable.shape)} here"
                )
            assignments.append((variable, value))
    for variable, value in assignments:
        variable.assign(keras.ops.cast(value, variable.dtype))
    return sum(int(keras.ops.size(variable)) for variable, _ in assignments)


def model_layers(model: keras.Model) -> list[tuple[str, keras.layers.Layer]]:
    """(name, layer) of every layer of `model` that holds weights."""
    return [(layer.name, layer) for layer in model.layers if layer.weights]


def encoder_layers(model: keras.Model) -> list[tuple[str, keras.layers.Layer]]:
    """(name, layer) of the encoder of a `Seq2SeqTransformer` or a `TransformerClassifier`
    (the same attributes in both): embedding, learned positions, blocks, final norm."""
    named = [("source_embedding", model.source_embedding)]
    if model.config.position_encoding == "learned":
        named.append(("position_encoding", model.position_encoding))
    named += [(block.name, block) for block in model.encoder_blocks]
    if model.encoder_final_norm is not None:
        named.append(("encoder_final_norm", model.encoder_final_norm))
    return named
