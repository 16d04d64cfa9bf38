"""hear-slicer: SLICER audio embeddings as a HEAR 2021 plugin.

    import hear_slicer
    model = hear_slicer.load_model()              # or load_model("path/to/checkpoint.pt")
    reference = hear_slicer.load_model(random_init=True)  # same model at fixed-seed random weights
    emb = hear_slicer.get_scene_embeddings(audio, model)          # (n, 2048)
    emb, ts = hear_slicer.get_timestamp_embeddings(audio, model)  # (n, K, 2048), (n, K) ms
"""
from .api import get_scene_embeddings, get_timestamp_embeddings, load_model

__all__ = ["load_model", "get_scene_embeddings", "get_timestamp_embeddings"]
__version__ = "0.1.0"
