"""Adaptation from a user's correction in seconds: a per-image feature stack (a filter bank plus
the network's probabilities) and a pixel classifier head over it, stored in the checkpoint."""
