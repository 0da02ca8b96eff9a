"""Model versions in service: shadow and canary candidates, agreement, promotion gate."""
