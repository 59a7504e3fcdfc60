"""Scores of translations (sacreBLEU, chrF) and of a model on parallel data (perplexity)."""
