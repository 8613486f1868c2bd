"""Training: the spec, the SGDR schedule, online augmentation, distillation and the trainer.

Kept import-light on purpose: `training.spec` and `training.schedule` are used by the
configuration and by tests without pulling in the models or the feature store.
"""
