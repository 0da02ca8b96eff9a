"""Label shares that hold under a shifted label mix, with 95 % intervals; net sentiment."""
