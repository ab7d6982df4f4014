"""clap_train: contrastive language-audio pretraining (CLAP), trained at any scale.

Stable Python API::

    from clap_train import load_model
    model = load_model("runs/default/checkpoints/last.ckpt")
    a = model.encode_audio(waveforms, sample_rate=48000)   # [B, D], L2-normalised
    t = model.encode_text(["a dog barking"])              # [B, D], L2-normalised
"""

__version__ = "0.1.0"


def load_model(path, map_location="cpu", **kwargs):
    """Load a CLAP model (in eval mode) from a checkpoint written by clap_train."""
    from clap_train.checkpoints.load import load_model as _load

    return _load(path, map_location=map_location, **kwargs)


__all__ = ["load_model", "__version__"]
