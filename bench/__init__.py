"""``make bench``: openecr side by side with moto, ministack and distribution (see README)."""
