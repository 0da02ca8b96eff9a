"""Where posts come from: Reddit under one request budget, comments, corpus, replay."""
