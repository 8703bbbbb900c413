"""Clinical knowledge: read cards/ and mappings/ once at start-up, validate, and hold it frozen."""
