"""Parallel text to batches: SentencePiece vocabularies (tokenizer), corpora (sources,
synthetic) and the tf.data input pipeline (pipeline)."""
