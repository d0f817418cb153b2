"""Losses, importance weights, trainers, schedule, export."""
