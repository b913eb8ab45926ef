"""Images: the torch dataset, decoding of every image mode, colour from FITS bands."""
