"""The HTTP side: the seed's response envelope, request helpers and the per-role ASGI app."""
