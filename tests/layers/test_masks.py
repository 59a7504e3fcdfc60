import numpy as np

from tf_transformer.layers import masks


def test_padding_mask_is_false_exactly_at_pad():
    ids = np.array([[5, 6, 0, 0], [7, 0, 8, 0]])
    np.testing.assert_array_equal(
        masks.padding_mask(ids), [[True, True, False, False], [True, False, True, False]]
    )


def test_causal_mask_is_lower_triangular():
    np.testing.assert_array_equal(
        masks.causal_mask(3), [[[True, False, False], [True, True, False], [True, True, True]]]
    )


def test_causal_mask_with_offset_continues_a_prefix():
    # Queries at positions 2 and 3 over 5 cached keys.
    np.testing.assert_array_equal(
        masks.causal_mask(2, key_length=5, query_offset=2),
        [[[True, True, True, False, False], [True, True, True, True, False]]],
    )


def test_attention_mask_from_padding_repeats_key_mask_for_every_query():
    mask = masks.attention_mask_from_padding(2, np.array([[True, False, True]]))
    np.testing.assert_array_equal(mask, [[[True, False, True], [True, False, True]]])


def test_merge_masks_ands_present_masks_and_skips_none():
    causal = masks.causal_mask(2)
    padding = masks.attention_mask_from_padding(2, np.array([[True, False], [True, True]]))
    np.testing.assert_array_equal(
        masks.merge_masks(causal, None, padding),
        [[[True, False], [True, False]], [[True, False], [True, True]]],
    )
    assert masks.merge_masks(None, None) is None
