"""Special token ids, fixed when the SentencePiece model is trained.

This is the only place they are defined; every other module imports them.
"""

PAD = 0
UNK = 1
BOS = 2
EOS = 3
