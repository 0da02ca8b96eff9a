"""Defaults that more than one layer needs (Settings, the app args, a deployment's own config,
a client's signature): each is written here once and imported everywhere else."""

from __future__ import annotations

REDDIT_WWW_URL = "https://www.reddit.com"  # public search JSON; praw's token endpoint
REDDIT_OAUTH_URL = "https://oauth.reddit.com"  # praw's API calls
CACHE_TTL_S = 3600  # an /analyze answer stays cached this long
MAX_BATCH_SIZE = 32  # the Classifier's dynamic batch (and the ingress's inline batch)
BATCH_WAIT_S = 0.005  # how long a dynamic batch waits to fill
