"""Generation: search strategies over the model's cached decoder, and strings in/out."""
