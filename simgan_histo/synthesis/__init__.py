"""The GAN-free synthesis module (paper §4.1, Fig. 3)."""
