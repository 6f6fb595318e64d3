"""The reference fallback service: answers solver requests analytically."""
