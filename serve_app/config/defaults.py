"""Constants that more than one layer needs and that are not settings (settings are declared
once, in serve_app.config.settings): each is written here once and imported everywhere else."""

from __future__ import annotations

# Reddit's own endpoints: the RedditSettings defaults and the clients' signatures.
REDDIT_WWW_URL = "https://www.reddit.com"  # public search JSON; praw's token endpoint
REDDIT_OAUTH_URL = "https://oauth.reddit.com"  # praw's API calls
MAX_BATCH_SIZE = 32  # the Classifier's dynamic batch (and the ingress's inline batch)
BATCH_WAIT_S = 0.005  # how long a dynamic batch waits to fill
