"""Training job: backbones, the training pipeline and evaluation for the waste classifier."""
