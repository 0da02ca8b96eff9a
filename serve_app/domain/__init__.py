"""The service's own types: tasks, labels, posts, scopes, HTTP models, records, errors."""
