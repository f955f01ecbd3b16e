"""Visual fusions: how the image feature enters a model."""
