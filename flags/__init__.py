"""absl flag definitions for the top-level scripts, each flag defined once (STYLE §3)."""
