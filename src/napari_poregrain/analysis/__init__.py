"""Scoring and measuring segmentations: confusion matrix / IoU, porosity and size statistics."""
