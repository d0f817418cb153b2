"""Keras functional builders: reference branch, refiner, discriminator, U-Net, 15-conv CNN."""
