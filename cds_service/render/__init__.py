"""STEP 6: findings -> CDS Hooks cards (JSON-ready dicts, with no empty or null fields)."""
