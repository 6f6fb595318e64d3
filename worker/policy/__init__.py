"""Versioned inference policy: binds a bundle, its operating point and the routing rules."""
