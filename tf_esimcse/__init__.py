"""tf_esimcse: contrastive sentence embeddings (SimCSE, ESimCSE, DiffCSE) for Keras 3 / TensorFlow."""
__version__ = "0.1.0"
