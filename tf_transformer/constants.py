"""Special token ids, fixed when the SentencePiece model is trained.

This is the only place they are defined; every other module imports them.
"""

PAD = 0
UNK = 1
BOS = 2
EOS = 3

# Reserved only in vocabularies trained with data.extra_ids > 0 (denoising): the mask
# piece, then the sentinels <extra_id_0>, <extra_id_1>, ... as control symbols.
MASK = 4
FIRST_SENTINEL = 5
MASK_PIECE = "<mask>"
SENTINEL_PIECE = "<extra_id_{}>"
