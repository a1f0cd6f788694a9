"""Adapters that implement the ports: filesystem blobs, SQL metadata."""
