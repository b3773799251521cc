"""Training and fine-tuning: configuration, crop sampling, the training loop, recipes."""
