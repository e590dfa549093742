"""Built-in biological systems; each subpackage registers itself on import."""
