"""Audio front-end, augmentation, encoders and temporal pooling."""
