"""Whole-slide reading, tissue, stain, tiling, writers, runners."""
