"""Why: the terms that drive each label, emerging terms, representative posts."""
